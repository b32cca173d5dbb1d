#!/usr/bin/env bash
# The CA's own gRPC transport (src/rpc) against real HTTP/2 peers that are not
# our code: curl (libcurl + nghttp2) speaking gRPC's HTTP mapping by hand, and
# openssl s_client writing bytes that are not HTTP/2 at all. Each hostile
# request gets its exact answer (HTTP status or grpc-status), nothing is
# recorded, and the CA keeps serving (TESTING.md §3).
#   bash tests/integration/ca_transport_test.sh build/meshid
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh" "$@"
cd "$TMP" || exit 2

cat >ca.yaml <<YAML
trust_domain: example.org
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: state
signer:
  type: selfsigned
limits:
  max_message_bytes: 65536
YAML
start_ca ca.log || { fail "the CA starts"; finish; }
ROOT=state/ca/root-cert.pem
URL=https://127.0.0.1:$GRPC

# grpc PATH BODYFILE [CURL ARGS...]: one gRPC call by hand; the response
# headers and trailers (curl writes both to -D) land in $OUT.
grpc() {
  local path=$1 body=$2
  shift 2
  run curl -sS --http2 --max-time 5 --cacert "$ROOT" -H 'te: trailers' \
    -H 'content-type: application/grpc' "$@" --data-binary @"$body" -D - -o reply.bin "$URL$path"
}
grpc_status() {  # the grpc-status curl saw, or "none"
  local re=$'grpc-status: ([0-9]+)'
  if [[ $OUT =~ $re ]]; then echo "${BASH_REMATCH[1]}"; else echo none; fi
}
issuances() {
  local j re='"issuances_recorded": *([0-9]+)'
  j=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/debug/ca")
  if [[ $j =~ $re ]]; then echo "${BASH_REMATCH[1]}"; else echo "unreadable"; fi
}

printf '\x00\x00\x00\x00\x00' >empty.bin   # one empty message: a valid GetTrustBundleRequest
printf '\x01\x00\x00\x00\x00' >compressed.bin
printf '\x00\x00\x00\x00\x64abc' >short.bin  # says 100 bytes, carries 3
cat empty.bin empty.bin >two.bin
printf '\x00\x00\x00\x00\x03\xff\xff\xff' >garbage.bin
printf '\x02\x00\x00\x00\x00' >flags.bin
head -c 200000 /dev/zero >huge.bin

# A client that connects and never starts TLS is closed after the 10 s
# handshake timeout; it runs beside the checks below and is judged at the end.
( start=$(date +%s%N)
  timeout 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$GRPC && cat <&3 >/dev/null"
  echo "$? $((($(date +%s%N) - start) / 1000000))" >silent.txt ) </dev/null &
SILENT_PID=$!

########## a well-formed call, answered ##########
grpc /meshid.v1.MeshCA/GetTrustBundle empty.bin
expect_eq "GetTrustBundle by hand: exit 0" 0 "$RC"
expect_eq "GetTrustBundle by hand: grpc-status 0 (in trailers)" 0 "$(grpc_status)"
expect_contains "GetTrustBundle by hand: HTTP/2 200, application/grpc" "$OUT" "content-type: application/grpc"
# The message: 5-byte prefix, then a TrustBundle holding the trust domain.
expect_eq "GetTrustBundle by hand: uncompressed prefix" "00" "$(head -c 1 reply.bin | od -An -tx1 | tr -d ' \n')"
expect_true "GetTrustBundle by hand: the bundle names example.org" grep -qa example.org reply.bin
BEFORE=$(issuances)

########## hostile calls, each with its answer ##########
grpc /meshid.v1.MeshCA/GetTrustBundle empty.bin -H 'content-type: text/plain'
expect_contains "foreign content-type: HTTP 415" "$OUT" "HTTP/2 415"
run curl -sS --http2 --max-time 5 --cacert "$ROOT" -D - -o /dev/null "$URL/meshid.v1.MeshCA/GetTrustBundle"
expect_contains "GET: HTTP 415" "$OUT" "HTTP/2 415"
grpc /no.such.Service/Method empty.bin
expect_eq "unknown method: UNIMPLEMENTED" 12 "$(grpc_status)"
expect_contains "unknown method: the message names it" "$OUT" "unknown method /no.such.Service/Method"
grpc /meshid.v1.MeshCA/Sign compressed.bin
expect_eq "compressed message: UNIMPLEMENTED" 12 "$(grpc_status)"
grpc /meshid.v1.MeshCA/Sign flags.bin
expect_eq "unknown message flags: INTERNAL" 13 "$(grpc_status)"
grpc /meshid.v1.MeshCA/Sign short.bin
expect_eq "message shorter than its prefix: INTERNAL" 13 "$(grpc_status)"
grpc /meshid.v1.MeshCA/GetTrustBundle two.bin
expect_eq "two messages in a unary call: INTERNAL" 13 "$(grpc_status)"
grpc /meshid.v1.MeshCA/Sign garbage.bin
expect_eq "bytes that are no protobuf: INTERNAL" 13 "$(grpc_status)"
expect_contains "bytes that are no protobuf: says so" "$OUT" "does not parse"
grpc /istio.v1.auth.IstioCertificateService/CreateCertificate huge.bin
expect_eq "200 kB message over a 64 KiB cap: RESOURCE_EXHAUSTED" 8 "$(grpc_status)"
grpc /meshid.v1.MeshCA/Sign empty.bin
expect_eq "Sign without a credential: UNAUTHENTICATED" 16 "$(grpc_status)"
grpc /meshid.v1.MeshCA/GetTrustBundle empty.bin -H "x-padding: $(head -c 20000 /dev/zero | tr '\0' a)"
expect_true "20 kB of request headers: the stream is reset" test "$RC" -ne 0
expect_contains "20 kB of request headers: curl saw the reset" "$ERR" "not closed cleanly"

# gRPC C++'s reset of a stream it cancelled before opening it (RFC 9113 calls
# that a connection error; gRPC's servers let it pass): the next call on the
# connection is answered, not cut off by a GOAWAY.
run python3 "$HERE/h2_early_reset.py" 127.0.0.1 "$GRPC" "$ROOT" /meshid.v1.MeshCA/GetTrustBundle
expect_eq "a reset of a never-opened stream: the connection's next call is answered" answered "$OUT"

########## not HTTP/2 at all ##########
run curl -sS --http1.1 --max-time 5 --cacert "$ROOT" -o /dev/null "$URL/"
expect_contains "HTTP/1.1 only (ALPN without h2): refused in the handshake" "$ERR" "no application protocol"
# HTTP/1.1 text where the HTTP/2 preface belongs: the connection is closed.
STDIN=/dev/null run bash -c "(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'; sleep 1) |
  timeout 5 openssl s_client -alpn h2 -quiet -CAfile $ROOT -connect 127.0.0.1:$GRPC"
expect_true "HTTP/1.1 text after ALPN h2: closed before s_client's timeout" test "$RC" -ne 124
# A valid preface, then random bytes: GOAWAY, then close.
STDIN=/dev/null run bash -c "(printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'; head -c 5000 /dev/urandom; sleep 1) |
  timeout 5 openssl s_client -alpn h2 -quiet -CAfile $ROOT -connect 127.0.0.1:$GRPC 2>/dev/null | od -An -c"
expect_true "random frames after the preface: closed before s_client's timeout" test "$RC" -ne 124
# Plaintext bytes on the TLS port: the handshake fails and the CA goes on.
run bash -c "printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | timeout 3 curl -s --max-time 2 telnet://127.0.0.1:$GRPC"
expect_true "plaintext HTTP/2 on the TLS port: no hang" test "$RC" -ne 124

########## the transport's metrics say what happened ##########
metric() {  # metric NAME: its value on /metrics, or "absent"
  local v
  v=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" | awk -v n="$1" '$1 == n { print $2 }')
  echo "${v:-absent}"
}
REFUSED=$(metric meshid_ca_grpc_calls_refused_total)
expect_true "calls refused by the transport counted (415 x2, unknown, compressed, flags, short, two, huge: $REFUSED)" \
  test "$REFUSED" != absent -a "${REFUSED%.*}" -ge 8
HS=$(metric meshid_ca_grpc_handshake_failures_total)
expect_true "failed handshakes counted (ALPN without h2, plaintext: $HS)" \
  test "$HS" != absent -a "${HS%.*}" -ge 2
PE=$(metric meshid_ca_grpc_protocol_errors_total)
expect_true "HTTP/2 protocol errors counted (HTTP/1.1 text, random frames: $PE)" \
  test "$PE" != absent -a "${PE%.*}" -ge 2
curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" >metrics.txt
expect_contains "/metrics has the transport's families" "$(<metrics.txt)" "# TYPE meshid_ca_grpc_connections gauge"
STDIN=metrics.txt check "promtool accepts /metrics with the transport's families" promtool check metrics

########## nothing recorded, still serving ##########
expect_eq "nothing was recorded by any hostile call" "$BEFORE" "$(issuances)"
grpc /meshid.v1.MeshCA/GetTrustBundle empty.bin
expect_eq "still serving afterwards: grpc-status 0" 0 "$(grpc_status)"
expect_true "the CA process is alive" kill -0 "$CA_PID"

# Many calls at once on one connection: every one answered (HTTP/2 streams,
# not one call at a time).
for i in $(seq 1 50); do
  printf 'url = "%s"\noutput = "/dev/null"\n' "$URL/meshid.v1.MeshCA/GetTrustBundle"
done >many.cfg
run curl -sS --http2 --parallel --parallel-max 50 --max-time 10 --cacert "$ROOT" -H 'te: trailers' \
  -H 'content-type: application/grpc' --data-binary @empty.bin -D - -K many.cfg \
  -w 'connects=%{num_connects}\n'
expect_eq "50 parallel calls: 50 answers with grpc-status 0" 50 "$(grep -c 'grpc-status: 0' <<<"$OUT")"
expect_true "50 parallel calls: on at most 2 connections" \
  test "$(grep -c 'connects=1' <<<"$OUT")" -le 2

wait "$SILENT_PID"
read -r SILENT_RC SILENT_MS <silent.txt
expect_eq "silent TCP client: closed by the CA, not by our 20 s timeout" 0 "$SILENT_RC"
expect_true "silent TCP client: held for the 10 s handshake timeout ($SILENT_MS ms)" \
  test "$SILENT_MS" -ge 9000 -a "$SILENT_MS" -le 15000

########## shutdown: in-flight GOAWAY, clean exit ##########
kill -TERM "$CA_PID"
for i in $(seq 1 100); do kill -0 "$CA_PID" 2>/dev/null || break; sleep 0.05; done
expect_true "SIGTERM: the CA exits within 5 s" bash -c "! kill -0 $CA_PID 2>/dev/null"
finish
