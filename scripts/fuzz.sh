#!/usr/bin/env bash
# Runs every libFuzzer target for N seconds from seeds made by meshid and
# openssl. A crash leaves its input in the printed artifact path and fails.
set -euo pipefail
BUILD=${1:-build-sanitize}
SECS=${2:-10}
WORK=$(mktemp -d /tmp/meshid-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
M="$BUILD/meshid"
REPO=$(cd "$(dirname "$0")/.." && pwd)

seeds() { mkdir -p "$WORK/$1"; echo "$WORK/$1"; }
S=$(seeds spiffe); printf 'spiffe://example.org/ns/default/sa/web' > "$S/a"; printf 'spiffe://td' > "$S/b"
printf 'spiffe://Example.org/a//b' > "$S/c"
S=$(seeds time); printf '1h30m' > "$S/a"; printf '2026-11-25T09:06:24Z' > "$S/b"; printf '2026-11-25T09:06:24.5+02:00' > "$S/c"
"$M" ca init --trust-domain example.org --out "$WORK/ca" >/dev/null
"$M" cert issue --ca "$WORK/ca" --spiffe-id spiffe://example.org/ns/a/sa/b --out "$WORK/leaf" --key-type rsa-2048 >/dev/null
S=$(seeds certs); cp "$WORK/leaf/cert-chain.pem" "$S/chain.pem"
openssl x509 -in "$WORK/leaf/cert-chain.pem" -outform DER -out "$S/leaf.der"
openssl x509 -in "$WORK/ca/ca-cert.pem" -outform DER -out "$S/ca.der"
S=$(seeds csr)
"$M" csr create --spiffe-id spiffe://example.org/ns/a/sa/b --key-out "$WORK/k.pem" --out "$S/ec.pem"
openssl req -in "$S/ec.pem" -outform DER -out "$S/ec.der"
# PEM layouts the parser accepts besides openssl's own (fuzz_csr compares them with its PEM reader).
sed 's/$/\r/' "$S/ec.pem" > "$S/ec-crlf.pem"
{ echo "request for b:"; head -1 "$S/ec.pem"; sed '1d;$d' "$S/ec.pem" | tr -d '\n'; echo; tail -1 "$S/ec.pem"; } > "$S/ec-one-line.pem"
openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj / \
  -addext "subjectAltName=critical,URI:spiffe://example.org/x,DNS:x" -outform DER -out "$S/rsa.der" 2>/dev/null
S=$(seeds keys); cp "$WORK/k.pem" "$S/ec.pem"; cp "$WORK/leaf/key.pem" "$S/rsa.pem"
MESHID_KEY_PASSPHRASE=fuzz "$M" csr create --spiffe-id spiffe://example.org/x --key-out "$S/enc.pem" >/dev/null
# fuzz_jwt input: JWKS, NUL, token. The keys are fuzz_jwt.cc's fixed JWKS, so
# the tokens verify there (an empty JWKS part falls back to it).
S=$(seeds jwt)
JWKS='{"keys":[{"alg":"ES256","crv":"P-256","kid":"fuzz-ec","kty":"EC","use":"sig","x":"LE0QsHXmNxXvSUUicg8MkHr82OP8JViUKn9jCi2CqHY","y":"haKvh5Ecy3M0WBUGVSCU-LedqHqVf6u4UvnuMuHUq-U"},{"alg":"RS256","e":"AQAB","kid":"fuzz-rsa","kty":"RSA","n":"w0RcDyx-rANl-1sCF1xp0WpdujIRJJjb9r0rcXyrSgTgR6AxF7kwYZW4toPuFl_pRcO3RXjmXGed5mBkTzkFyF0-mYAxF9qPtfbfyJrcWMxer74pQYTg1GAH_FeDbRaNyGuwKSl3befXqoFRsD9G4SE8zQ9H07JBTUNwdzPupUFE8Y7nQcFeXxrtsfUcfILDqWEUtIomxpi5WsGvNzqJuqmhvtJd5gR35uB_iRL6_EUXR_PsLMw-mzpG9IRF6S2DQqGveE-OHiUJNXCx_Idrs0-TQlcFXPPaKkE3SaXnvVwNVkD_CkO7G4RAp5R1kIAaCO2LLgrAW8AX_MuK3Y81eQ","use":"sig"}]}'
printf '%s\0%s' "$JWKS" 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enotZWMiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOlsiaXN0aW8tY2EiXSwiZXhwIjoyMDAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImlzcyI6Imh0dHBzOi8va3ViZXJuZXRlcy5kZWZhdWx0LnN2Yy5jbHVzdGVyLmxvY2FsIiwia3ViZXJuZXRlcy5pbyI6eyJuYW1lc3BhY2UiOiJkZWZhdWx0IiwicG9kIjp7Im5hbWUiOiJ3ZWItMSIsInVpZCI6InUyIn0sInNlcnZpY2VhY2NvdW50Ijp7Im5hbWUiOiJ3ZWIiLCJ1aWQiOiJ1MSJ9fSwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp3ZWIifQ.VwcjNtNs0DyvRh9vXi36Dh-QvD9Dya0MMnUBlSriQcU915cJTa1XOowMmKf3H-EJUdin5Hl2pURW_rzNVESVxw' > "$S/es256"
printf '\0%s' 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImZ1enotcnNhIn0.eyJhdWQiOlsiaXN0aW8tY2EiXSwiZXhwIjoyMDAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImlzcyI6Imh0dHBzOi8va3ViZXJuZXRlcy5kZWZhdWx0LnN2Yy5jbHVzdGVyLmxvY2FsIiwia3ViZXJuZXRlcy5pbyI6eyJuYW1lc3BhY2UiOiJkZWZhdWx0IiwicG9kIjp7Im5hbWUiOiJ3ZWItMSIsInVpZCI6InUyIn0sInNlcnZpY2VhY2NvdW50Ijp7Im5hbWUiOiJ3ZWIiLCJ1aWQiOiJ1MSJ9fSwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp3ZWIifQ.hRO8q_SkZt5lrAQwceQZI_yb98DnLNR_55M1-LtOZHh5e-i72RuOMU-Mf-6TFrAobCzQ43q3yL3LFYJjQTRyDDCZfTGf9AOm05WnL34AClqdRCZtDXOCgS7oaikIoX8pHGhnBuqwEn6zwDG02yI6Nza1Fj1ESp_X2lIkMD2mvJPWeQ_dn2h0q2A1rG1rDO3zcXOKtzkHoAxXDRyxTeziUCcetGRUuYEEcb0eEsWSJa9rCRSEzGOERbHXxJNZ1ms-xdSnSx6mNVWg71UTW5kdQ7_st0MbU-AtJiEJIXu_HTCwlPUVsgYStTeBv60onp7Kma0P8uDEoPXGtuMCuKTnTw' > "$S/rs256"
printf '%s' "$JWKS" > "$S/jwks"

S=$(seeds agent_config)
cat > "$S/full.yaml" <<'YAML'
trust_domain: example.org
ca: {addresses: [127.0.0.1:15012], root_file: root.pem, timeout: 5s}
credentials: {join_token_file: t, agent_id: spiffe://example.org/agent/n1}
state_dir: s
sockets: {sds: /run/sds.sock, workload_api: wl.sock, admin: a.sock}
rotation: {ttl: 1h30m, key_type: rsa-2048, grace_ratio: 0.4, initial_backoff: 500ms}
entries:
  - spiffe_id: spiffe://example.org/ns/web/sa/web
    selectors: {uid: 1000, gid: 1000, path: /usr/bin/envoy}
  - spiffe_id: spiffe://example.org/ns/f/sa/n
    file_sink: {dir: d, combined_file: tls.pem, signal_pid_file: p, signal: HUP}
bundle_sinks: [{path: b.pem}]
YAML

# proxy.yaml: the repository's own, as the docs, the tests and a sidecar use it.
S=$(seeds proxy_config)
sed -n '/^```yaml$/,/^```$/p' "$REPO/docs/PROXY.md" | sed '1d;$d' > "$S/docs.yaml"
cat > "$S/minimal.yaml" <<'YAML'
trust_domain: example.org
certificates: {cert_file: server/cert-chain.pem, key_file: server/key.pem, bundle_file: trust.pem}
admin_listen: 127.0.0.1:0
workers: 1
inbound: [{name: in, listen: 127.0.0.1:19998, forward: 127.0.0.1:19999}]
YAML
cat > "$S/files.yaml" <<'YAML'
trust_domain: example.org
certificates: {cert_file: live-chain.pem, key_file: live-key.pem, bundle_file: ca/root-cert.pem,
               poll_interval: 200ms}
admin_listen: 127.0.0.1:0
workers: 2
tls: {ticket_key_rotation: 3s, ciphers: ECDHE-ECDSA-AES128-GCM-SHA256}
limits: {max_connections: 100}
inbound:
  - {name: strict, listen: 127.0.0.1:0, forward: 127.0.0.1:8080, mode: STRICT,
     allow: ["spiffe://example.org/ns/shop/"], alpn: [h2, http/1.1]}
  - {name: permissive, listen: 127.0.0.1:0, forward: 127.0.0.1:8080, mode: PERMISSIVE}
  - {name: disable, listen: 127.0.0.1:0, forward: 127.0.0.1:8080, mode: DISABLE}
YAML
# At the durations' cap (100 years), so mutations cross it.
cat > "$S/limits.yaml" <<'YAML'
trust_domain: example.org
certificates: {cert_file: c, key_file: k, bundle_file: b, poll_interval: 200ms}
timeouts: {handshake: 3153600000000ms, idle: 36500d}
inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2}]
YAML
cat > "$S/sds.yaml" <<'YAML'
trust_domain: example.org
certificates: {sds: {socket: sock/sds.sock, certificate: default, validation: ROOTCA, initial_fetch_timeout: 20s}}
admin_listen: 127.0.0.1:0
timeouts: {handshake: 500ms, idle: 1m}
outbound:
  - {name: web, listen: 127.0.0.1:0, destination: 127.0.0.1:15006,
     expected_ids: [spiffe://example.org/ns/web/sa/web], sni: web, alpn: [h2], resumption: false}
  - {name: pinned, listen: "[::1]:0", destination: 127.0.0.1:15006, ca_file: other/root-cert.pem}
YAML
# Allow lists: entries one per line, NUL, a peer.
S=$(seeds proxy_authz)
printf 'spiffe://td/ns/web/sa/web\nspiffe://partner.org\nspiffe://td/ns/payments/\0spiffe://td/ns/payments/sa/api' > "$S/a"
printf 'spiffe://example.org/ns/shop/\0spiffe://example.org/ns/shop-v2/sa/x' > "$S/b"
printf 'spiffe://example.org\0spiffe://example.org.evil/x' > "$S/c"
printf '\0spiffe://any.org/x' > "$S/d"
# The sniff: a mode byte (0 STRICT, 1 PERMISSIVE, 2 DISABLE), then the first
# bytes a client sends: OpenSSL's ClientHellos (TLS 1.3 and 1.2) and HTTP.
S=$(seeds inbound_sniff)
python3 - "$S" <<'PY'
import ssl, sys
for name, top in (("tls13", ssl.TLSVersion.TLSv1_3), ("tls12", ssl.TLSVersion.TLSv1_2)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode, ctx.maximum_version = False, ssl.CERT_NONE, top
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="web.example.org")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    for mode in (0, 1):
        open(f"{sys.argv[1]}/{name}-{mode}", "wb").write(bytes([mode]) + hello)
PY
printf '\001GET / HTTP/1.1\r\nHost: web\r\n\r\n' > "$S/http"
printf '\000PRI * HTTP/2.0\r\n' > "$S/h2c"
# SDS responses, encoded by protoc from text: the two secrets of the leaf
# issued above (a set the client accepts), one of them, and a name not asked for.
S=$(seeds sds_response)
pem() { awk '{printf "%s\\n", $0}' "$1"; }
CHAIN=$(pem "$WORK/leaf/cert-chain.pem"); KEY=$(pem "$WORK/leaf/key.pem"); ROOT=$(pem "$WORK/leaf/root-cert.pem")
SECRET='[type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret]'
sds() {
  protoc -I"$REPO/proto" --encode=envoy.service.discovery.v3.DiscoveryResponse \
    envoy/service/discovery/v3/discovery.proto envoy/extensions/transport_sockets/tls/v3/secret.proto
}
CERT="resources { $SECRET { name: \"default\" tls_certificate {
  certificate_chain { inline_bytes: \"$CHAIN\" } private_key { inline_bytes: \"$KEY\" } } } }"
ROOTS="resources { $SECRET { name: \"ROOTCA\" validation_context { trusted_ca { inline_string: \"$ROOT\" } } } }"
HEAD="version_info: \"v1\" nonce: \"n1\" type_url: \"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\""
echo "$HEAD $CERT $ROOTS" | sds > "$S/both"
echo "$HEAD $ROOTS" | sds > "$S/roots"
echo "$HEAD $CERT" | sds > "$S/cert"
echo "$HEAD resources { $SECRET { name: \"other\" generic_secret { secret { filename: \"/etc/passwd\" } } } }" | sds > "$S/other"

# TLS 1.3 records: a control byte (fuzz_tls13_records.cc), then a record
# header and body, or application data to seal.
S=$(seeds tls13_records)
printf '\000\027\003\003\000\021ABCDEFGHIJKLMNOPQ' > "$S/record"
printf '\001GET / HTTP/1.1\r\nHost: x\r\n\r\n' > "$S/data"
printf '\123\027\003\003\100\001' > "$S/too-long"

# gRPC request bodies: an empty message, a short one, a compressed flag, a
# torn prefix, two messages.
S=$(seeds grpc_wire)
printf '\000\000\000\000\000' > "$S/empty"
printf '\000\000\000\000\003abc' > "$S/short"
printf '\001\000\000\000\001z' > "$S/compressed"
printf '\000\000\000' > "$S/torn"
printf '\000\000\000\000\001a\000\000\000\000\001b' > "$S/two"

run() {
  local target=$1 corpus=$2
  echo "--- $target (${SECS}s)"
  local rc=0
  "$BUILD/tests/fuzz/$target" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$BUILD/fuzz-artifact-$target-" -print_final_stats=1 "$corpus" \
    > "$WORK/$target.log" 2>&1 || rc=$?
  grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|artifact|#[0-9]+ +DONE' "$WORK/$target.log" || true
  if ((rc != 0)); then
    echo "$target FAILED (rc $rc); last lines of its log:"; tail -30 "$WORK/$target.log"
  fi
  return "$rc"
}
failed=0
run fuzz_spiffe_id "$WORK/spiffe" || failed=1
run fuzz_time_text "$WORK/time" || failed=1
run fuzz_certificates "$WORK/certs" || failed=1
run fuzz_csr "$WORK/csr" || failed=1
run fuzz_private_key "$WORK/keys" || failed=1
run fuzz_jwt "$WORK/jwt" || failed=1
run fuzz_agent_config "$WORK/agent_config" || failed=1
run fuzz_proxy_config "$WORK/proxy_config" || failed=1
run fuzz_proxy_authz "$WORK/proxy_authz" || failed=1
run fuzz_inbound_sniff "$WORK/inbound_sniff" || failed=1
run fuzz_tls13_records "$WORK/tls13_records" || failed=1
run fuzz_sds_response "$WORK/sds_response" || failed=1
run fuzz_grpc_wire "$WORK/grpc_wire" || failed=1
if ((failed)); then echo "fuzz: a target failed"; exit 1; fi
echo "fuzz: all targets ran clean"
