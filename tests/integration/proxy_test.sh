#!/usr/bin/env bash
# `meshid proxy` against real peers (issue 5, first part): curl --cert and
# openssl s_client against inbound listeners (STRICT, PERMISSIVE, DISABLE,
# allow lists); openssl s_server -Verify behind an outbound listener; a peer
# with a wrong SPIFFE ID, a certificate from another root, an expired one, or
# none is refused and counted under its reason; a pinned CA refuses a server
# valid only under the mesh root; certificate files replaced under the proxy
# are used by the next handshake without a restart; 5 MB and half-close
# through two proxies.
#   bash tests/integration/proxy_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
cd "$TMP" || exit 2
SERVER_LIFETIME=60
TD=example.org
M=$MESHID

"$M" ca init --trust-domain $TD --out ca >/dev/null
"$M" ca init --trust-domain $TD --out other >/dev/null
issue() { "$M" cert issue --ca "$1" --spiffe-id "$2" --out "$3" --ttl "${4:-1h}" >/dev/null; }
issue ca spiffe://$TD/ns/web/sa/web server
issue ca spiffe://$TD/ns/shop/sa/client client
issue ca spiffe://$TD/ns/evil/sa/x stranger
issue other spiffe://$TD/ns/shop/sa/client foreign
# An expired client certificate: issued for 1 s, then wait it out.
issue ca spiffe://$TD/ns/shop/sa/client expired 1s
mkdir www
echo hello >www/index.html
head -c 5000000 /dev/urandom >www/big.bin
BACKEND=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server backend.log python3 -m http.server "$BACKEND" --bind 127.0.0.1 --directory www
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$BACKEND/" && break; sleep 0.05; done
# An echo backend for a keep-alive connection (http.server closes after each answer).
ECHO=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server echo.log python3 -c "
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d: return
            self.request.sendall(d)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('127.0.0.1', $ECHO), Echo).serve_forever()"

cp server/cert-chain.pem live-chain.pem
cp server/key.pem live-key.pem
cat >proxy.yaml <<YAML
trust_domain: $TD
certificates: {cert_file: live-chain.pem, key_file: live-key.pem, bundle_file: ca/root-cert.pem,
               poll_interval: 200ms}
admin_listen: 127.0.0.1:0
workers: 2
inbound:
  - {name: strict, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND, mode: STRICT,
     allow: ["spiffe://$TD/ns/shop/"]}
  - {name: permissive, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND, mode: PERMISSIVE}
  - {name: disable, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND, mode: DISABLE}
  - {name: echo, listen: 127.0.0.1:0, forward: 127.0.0.1:$ECHO, allow: ["spiffe://$TD/ns/shop/"]}
YAML
start_server proxy.log "${PROXY[@]}" --config proxy.yaml
PROXY_PID=$LAST_SERVER_PID
wait_for_log proxy.log "meshid proxy running" || { cat proxy.log; finish; }
port_of() { grep -oE "$1=[a-z]+(:[A-Z]+)?:[0-9]+" "${2:-proxy.log}" | grep -oE '[0-9]+$'; }
STRICT=$(port_of strict)
PERM=$(port_of permissive)
DIS=$(port_of disable)
ADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' proxy.log | cut -d: -f2)
check_output_contains "busy_poll is auto unless set" "busy polling: auto (5us before a sleep, up to 50us" cat proxy.log
stat() { curl -s "http://127.0.0.1:$ADMIN/stats" | jq -r ".listeners.$1$2"; }

# curl cannot check a SPIFFE ID (there is no DNS name): -k, and the chain is
# checked by openssl s_client below.
cat >mtls <<'SH'
#!/bin/sh
# mtls IDENTITY_DIR PORT [PATH]
exec curl -sS -k --max-time 5 --cert "$1/cert-chain.pem" --key "$1/key.pem" "https://127.0.0.1:$2/${3:-}"
SH
chmod +x mtls
mtls() { ./mtls "$@"; }

check_output_contains "STRICT: curl with a mesh identity on the allow list" "hello" ./mtls client "$STRICT"
check_output_contains "STRICT: openssl s_client verifies the proxy's chain (TLS 1.3)" "Verify return code: 0" \
  sh -c "echo | openssl s_client -connect 127.0.0.1:$STRICT -cert client/cert-chain.pem -cert_chain client/cert-chain.pem -key client/key.pem -CAfile ca/root-cert.pem -tls1_3"
check_output_contains "STRICT: TLS 1.2 works too" "hello" \
  curl -sS -k --tls-max 1.2 --cert client/cert-chain.pem --key client/key.pem "https://127.0.0.1:$STRICT/"
check_fails "STRICT: TLS 1.1 is refused" \
  sh -c "echo | openssl s_client -connect 127.0.0.1:$STRICT -tls1_1 -cert client/cert-chain.pem -key client/key.pem"
check_fails "STRICT: no client certificate" curl -sS -k --max-time 5 "https://127.0.0.1:$STRICT/"
check_fails "STRICT: a certificate from another root" ./mtls foreign "$STRICT"
sleep 1
check_fails "STRICT: an expired certificate" ./mtls expired "$STRICT"
check_fails "STRICT: a mesh identity not on the allow list" ./mtls stranger "$STRICT"
check_fails "STRICT: plaintext is refused (never a downgrade)" curl -sS --max-time 5 "http://127.0.0.1:$STRICT/"
expect_eq "counted: no_certificate" "1" "$(stat strict .errors.no_certificate)"
expect_eq "counted: connection_error (TLS 1.1)" "1" "$(stat strict .errors.connection_error)"
expect_eq "counted: fail_verify_error (foreign root, expired)" "2" "$(stat strict .errors.fail_verify_error)"
expect_eq "counted: authz_denied" "1" "$(stat strict .errors.authz_denied)"
expect_eq "counted: plaintext_refused" "1" "$(stat strict .errors.plaintext_refused)"
expect_eq "counted: handshakes" "3" "$(stat strict .handshakes)"
# NIST-curve key shares: the proxy takes its certificate keys through
# OpenSSL's built-in EC code (pki/builtin_ec_keys.h), which also makes its
# P-256/P-384 key shares; clients that offer nothing else still get through.
check_output_contains "STRICT: a client offering only P-256 key shares (TLS 1.3)" "hello" \
  curl -sS -k --curves P-256 --cert client/cert-chain.pem --key client/key.pem "https://127.0.0.1:$STRICT/"
check_output_contains "STRICT: a client offering P-384 first (TLS 1.2)" "hello" \
  curl -sS -k --tls-max 1.2 --curves P-384:P-256 --cert client/cert-chain.pem --key client/key.pem "https://127.0.0.1:$STRICT/"

check_output_contains "PERMISSIVE: plaintext on the same port" "hello" curl -sS "http://127.0.0.1:$PERM/"
check_output_contains "PERMISSIVE: mTLS on the same port" "hello" ./mtls client "$PERM"
check_fails "PERMISSIVE: TLS without a client certificate is still refused" \
  curl -sS -k --max-time 5 "https://127.0.0.1:$PERM/"
expect_eq "PERMISSIVE: one plaintext, one mTLS" "1/1" \
  "$(stat permissive .plaintext_connections)/$(stat permissive .handshakes)"
check_output_contains "DISABLE: plaintext" "hello" curl -sS "http://127.0.0.1:$DIS/"

# Outbound: a client-side proxy originating mTLS, in front of the inbound one
# and in front of openssl s_server -Verify (another real TLS peer).
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server s_server.log openssl s_server -accept "127.0.0.1:$SPORT" -www -Verify 2 \
  -verify_return_error -cert server/cert-chain.pem -cert_chain server/cert-chain.pem \
  -key server/key.pem -CAfile ca/root-cert.pem
cat >client.yaml <<YAML
trust_domain: $TD
certificates: {cert_file: client/cert-chain.pem, key_file: client/key.pem, bundle_file: ca/root-cert.pem}
admin_listen: 127.0.0.1:0
workers: 1
busy_poll: 50us  # the worker polls before it sleeps: every check below goes through that path
outbound:
  - {name: web, listen: 127.0.0.1:0, destination: 127.0.0.1:$STRICT,
     expected_ids: [spiffe://$TD/ns/web/sa/web]}
  - {name: sserver, listen: 127.0.0.1:0, destination: 127.0.0.1:$SPORT,
     expected_ids: [spiffe://$TD/ns/web/sa/web]}
  - {name: echo, listen: 127.0.0.1:0, destination: 127.0.0.1:$(port_of echo),
     expected_ids: [spiffe://$TD/ns/web/sa/web]}
  - {name: wrongid, listen: 127.0.0.1:0, destination: 127.0.0.1:$STRICT,
     expected_ids: [spiffe://$TD/ns/db/sa/pg]}
  - {name: pinned, listen: 127.0.0.1:0, destination: 127.0.0.1:$STRICT, ca_file: other/root-cert.pem}
YAML
start_server client.log "${PROXY[@]}" --config client.yaml
CLIENT_PID=$LAST_SERVER_PID
wait_for_log client.log "meshid proxy running" || { cat client.log; finish; }
check_output_contains "busy_poll is taken and said" "busy polling: each worker polls for 50us" cat client.log
CADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' client.log | cut -d: -f2)
cstat() { curl -s "http://127.0.0.1:$CADMIN/stats" | jq -r ".listeners.$1$2"; }
check_output_contains "outbound -> inbound: plaintext in, mTLS between, plaintext out" "hello" \
  curl -sS "http://127.0.0.1:$(port_of web client.log)/"
check_output_contains "outbound -> openssl s_server -Verify (it shows the client certificate it verified)" \
  "URI:spiffe://$TD/ns/shop/sa/client" \
  curl -sS --max-time 5 "http://127.0.0.1:$(port_of sserver client.log)/"
check_fails "outbound: a server with an unexpected SPIFFE ID is refused" \
  curl -sS --max-time 5 "http://127.0.0.1:$(port_of wrongid client.log)/"
expect_eq "counted: fail_verify_san" "1" "$(cstat wrongid .errors.fail_verify_san)"
check_fails "outbound: a pinned CA refuses a server valid only under the mesh root" \
  curl -sS --max-time 5 "http://127.0.0.1:$(port_of pinned client.log)/"
expect_eq "counted: fail_verify_error" "1" "$(cstat pinned .errors.fail_verify_error)"
# Resumption: the outbound proxy offers its last session to the destination.
before=$(cstat web .resumed_handshakes)
for i in 1 2 3; do curl -sS -o /dev/null "http://127.0.0.1:$(port_of web client.log)/"; done
after=$(cstat web .resumed_handshakes)
expect_true "outbound resumes TLS sessions ($before -> $after of 3 new connections)" \
  test "$((after - before))" -ge 2
expect_true "inbound counted resumed handshakes too ($(stat strict .resumed_handshakes))" \
  test "$(stat strict .resumed_handshakes)" -ge 2
check "5 MB through two proxies arrives intact" \
  sh -c "curl -sS http://127.0.0.1:$(port_of web client.log)/big.bin | cmp - www/big.bin"
polls=$(curl -s "http://127.0.0.1:$CADMIN/stats" | jq -r '.busy_polls.caught + .busy_polls.missed')
expect_true "busy_poll 50us: the worker's polls are counted in /stats ($polls)" test "$polls" -gt 0
expect_eq "busy_poll 50us: /stats says the budget is 50 us" "50" \
  "$(curl -s "http://127.0.0.1:$CADMIN/stats" | jq -r '.busy_polls.budget_us')"
# A busy keep-alive connection through both proxies (TLS 1.3): its records
# move from OpenSSL to the proxies' own record layer after the handshake, so
# OpenSSL keeps no buffers for it (tls.kept_buffers: see
# proxy_record_layer_test.sh with record_layer: openssl), and it goes on
# working after a quiet spell.
cat >keepalive.py <<'PY'
import json, socket, sys, time, urllib.request
port, admins = int(sys.argv[1]), sys.argv[2:]
def kept():
    out = []
    for a in admins:
        with urllib.request.urlopen(f"http://127.0.0.1:{a}/stats", timeout=5) as r:
            t = json.load(r)["tls_buffers"]
            out.append(f"{int(t['kept'])}/{int(t['released'])}")
    return " ".join(out)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
def echo(i):
    msg = b"%08d" % i * 8
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += s.recv(65536)
    assert got == msg, (got, msg)
for i in range(40):
    echo(i)
print("busy", kept())
time.sleep(2.6)
print("quiet", kept())
for i in range(3):
    echo(i)
print("again ok")
PY
ka=$(timeout 20 python3 keepalive.py "$(port_of echo client.log)" "$ADMIN" "$CADMIN" 2>&1)
echo "$ka"
expect_eq "a busy TLS 1.3 connection: OpenSSL keeps no buffers, inbound and outbound (kept/released)" \
  "busy 0/0 0/0" "$(grep '^busy' <<<"$ka")"
expect_eq "nor once it is quiet" "quiet 0/0 0/0" "$(grep '^quiet' <<<"$ka")"
expect_true "its records moved to the record layer, inbound ($(stat echo .record_layer_connections))" \
  test "$(stat echo .record_layer_connections)" -ge 1
expect_true "and outbound ($(cstat echo .record_layer_connections))" \
  test "$(cstat echo .record_layer_connections)" -ge 1
expect_eq "and the connection goes on" "again ok" "$(grep '^again' <<<"$ka")"
# 43 echoes of 64 bytes each way: the byte counters are exact.
expect_eq "bytes through the inbound listener, both ways (/stats)" "2752/2752" \
  "$(stat echo .bytes_in)/$(stat echo .bytes_out)"
expect_eq "bytes through the outbound listener, both ways (/stats)" "2752/2752" \
  "$(cstat echo .bytes_in)/$(cstat echo .bytes_out)"

# Half-close: the client sends its request and closes its sending side; the
# answer must still come back through both proxies.
check_output_contains "half-close: the answer arrives after the client shut its side" "hello" \
  python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $(port_of web client.log)))
s.sendall(b'GET / HTTP/1.0\r\n\r\n'); s.shutdown(socket.SHUT_WR)
data = b''
while True:
    d = s.recv(65536)
    if not d: break
    data += d
print(data.decode(errors='replace'))"

# Certificates replaced on disk: the next handshake presents the new one.
serial() {
  echo | openssl s_client -connect "127.0.0.1:$STRICT" -cert client/cert-chain.pem \
    -key client/key.pem 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2
}
before=$(serial)
issue ca spiffe://$TD/ns/web/sa/web rotated
cp rotated/key.pem live-key.tmp && cp rotated/cert-chain.pem live-chain.tmp
mv live-chain.tmp live-chain.pem && mv live-key.tmp live-key.pem
for ((i = 0; i < 40; i++)); do
  [[ $(serial) != "$before" ]] && break
  sleep 0.1
done
expect_eq "rotated files: new handshakes present the new certificate, no restart" \
  "$(openssl x509 -noout -serial -in rotated/cert-chain.pem | cut -d= -f2)" "$(serial)"
check_output_contains "and still serve" "hello" ./mtls client "$STRICT"
# A broken set (a key that does not match) is refused; the current one stays.
cp foreign/key.pem live-key.tmp && mv live-key.tmp live-key.pem
sleep 0.6
check_output_contains "a mismatched key on disk: refused, the current certificate keeps serving" \
  "hello" ./mtls client "$STRICT"
check_output_contains "the refusal is logged" "refused" cat proxy.log
curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt
STDIN=metrics.txt check "proxy /metrics passes promtool check metrics" promtool check metrics
expect_true "reloads counted" grep -q 'meshid_proxy_certificate_reloads_total{result="refused"} [1-9]' metrics.txt
expect_true "bytes in /metrics" \
  grep -q '^meshid_proxy_bytes_total{direction="inbound",flow="out",listener="echo"} 2752$' metrics.txt
expect_true "kept TLS buffers and record-layer connections in /metrics" \
  sh -c "grep -q '^meshid_proxy_tls_buffers_kept 0' metrics.txt &&
         grep -q '^meshid_proxy_record_layer_connections_total{direction=\"inbound\",listener=\"echo\"} 1$' metrics.txt"
expect_true "busy polls in /metrics, caught and missed" \
  sh -c "grep -q '^meshid_proxy_busy_polls_total{result=\"caught\"} [0-9]' metrics.txt &&
         grep -q '^meshid_proxy_busy_polls_total{result=\"missed\"} [0-9]' metrics.txt"
# auto: 5 us at the least, 50 us at the most; 0 only while its waits are too long to poll.
budget=$(awk '/^meshid_proxy_busy_poll_budget_seconds / { print $2 }' metrics.txt)
expect_true "auto's current poll budget in /metrics ($budget s): 0 or 5-50 us" \
  awk -v b="${budget:-x}" 'BEGIN { exit !(b == 0 || (b >= 5e-06 && b <= 5e-05)) }'

stop_server "$PROXY_PID"
check_output_contains "proxy stops on SIGTERM" "stopped" cat proxy.log
stop_server "$CLIENT_PID"
for log in proxy.log client.log; do
  expect_lacks "$log: no sanitizer report" "$(cat $log)" "Sanitizer"
  expect_lacks "$log: no undefined behaviour" "$(cat $log)" "runtime error"
done
finish
