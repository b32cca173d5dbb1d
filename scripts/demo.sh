#!/usr/bin/env bash
# The demo: make a CA, issue two workload identities, and prove them with a
# real mutual-TLS handshake between openssl s_server and openssl s_client;
# then show that a certificate from another root is refused; run the CA
# server, and an agent that keeps workloads' certificates rotating.
set -euo pipefail
MESHID=$(realpath "${1:-build/meshid}")
OUT=$(realpath -m "${DEMO_DIR:-build/demo}")
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"

server_pid=""
ca_pid=""
agent_pid=""
cleanup() {
  [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null
  [[ -n $agent_pid ]] && kill -TERM "$agent_pid" 2>/dev/null
  [[ -n $ca_pid ]] && kill -TERM "$ca_pid" 2>/dev/null
  wait 2>/dev/null
  true
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
first_cert() { awk '/BEGIN CERT/{n++} n==1' "$1"; }
rest_certs() { awk '/BEGIN CERT/{n++} n>=2' "$1"; }

# Starts openssl s_server on a free port with the given identity; sets $port.
start_server() {
  local dir=$1 roots=$2
  first_cert "$dir/cert-chain.pem" > "$dir/leaf.pem"; rest_certs "$dir/cert-chain.pem" > "$dir/chain.pem"
  : > server.log
  timeout 30 openssl s_server -accept 127.0.0.1:0 -naccept 1 -www \
    -cert "$dir/leaf.pem" -cert_chain "$dir/chain.pem" -key "$dir/key.pem" \
    -CAfile "$roots" -Verify 2 -verify_return_error > server.log 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    port=$(grep -oE 'ACCEPT .*:[0-9]+' server.log | grep -oE '[0-9]+$' || true)
    [[ -n $port ]] && return 0
    sleep 0.05
  done
  echo "s_server did not start" >&2; cat server.log >&2; return 1
}

# One HTTP request over mutual TLS; prints the server's status line or the failure.
request() {
  local dir=$1 roots=$2
  first_cert "$dir/cert-chain.pem" > "$dir/leaf.pem"; rest_certs "$dir/cert-chain.pem" > "$dir/chain.pem"
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet \
    -cert "$dir/leaf.pem" -cert_chain "$dir/chain.pem" -key "$dir/key.pem" \
    -CAfile "$roots" -verify_return_error 2>/dev/null | head -1 | tr -d '\r' || true
}

say "1. A CA for trust domain example.org (root + intermediate, Istio cacerts layout)"
"$MESHID" ca init --trust-domain example.org --out ca

say "2. Two workload identities, issued offline from that CA"
"$MESHID" cert issue --ca ca --spiffe-id spiffe://example.org/ns/shop/sa/web --ttl 1h --out web
"$MESHID" cert issue --ca ca --spiffe-id spiffe://example.org/ns/shop/sa/checkout --ttl 1h --out checkout
"$MESHID" cert verify --roots ca/root-cert.pem web/cert-chain.pem --key web/key.pem \
  --spiffe-id spiffe://example.org/ns/shop/sa/web

say "3. Mutual TLS: openssl s_server (web) requires a client certificate; openssl s_client (checkout) presents one"
start_server web ca/root-cert.pem
"$MESHID" cert inspect --connect "127.0.0.1:$port" --cert checkout/cert-chain.pem --key checkout/key.pem \
  --roots ca/root-cert.pem --spiffe-id spiffe://example.org/ns/shop/sa/web | sed -n '1p;$p'
wait "$server_pid" 2>/dev/null || true
start_server web ca/root-cert.pem
status=$(request checkout ca/root-cert.pem)
echo "checkout -> web over mTLS: ${status:-no reply}"
[[ $status == *200* ]] || { echo "demo failed: the mTLS request did not succeed" >&2; cat server.log >&2; exit 1; }
grep -q "ACCEPT" server.log
wait "$server_pid" 2>/dev/null || true

say "4. A certificate from another root is refused"
"$MESHID" ca init --trust-domain example.org --out other-ca >/dev/null
"$MESHID" cert issue --ca other-ca --spiffe-id spiffe://example.org/ns/shop/sa/checkout --out intruder >/dev/null
"$MESHID" cert verify --roots ca/root-cert.pem intruder/cert-chain.pem || true
start_server web ca/root-cert.pem
status=$(request intruder ca/root-cert.pem)
wait "$server_pid" 2>/dev/null || true
server_pid=""
if [[ $status == *200* ]]; then
  echo "demo failed: the server accepted a foreign certificate" >&2; exit 1
fi
echo "intruder -> web over mTLS: refused by the server ($(grep -m1 -oE 'verify error:.*' server.log || grep -m1 -i error server.log))"

say "5. The CA server: meshid ca serve, signing with the CA above as plugged-in files (Istio cacerts)"
cat > ca.yaml <<YAML
trust_domain: example.org
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: ca-state
signer: { type: files, dir: ca }
issuance: { default_ttl: 1h, max_ttl: 24h }
# The agent of step 7 may request certificates for the shop's workloads.
delegation:
  - agent: spiffe://example.org/meshid/agent/demo-node
    may_request: [spiffe://example.org/ns/shop/]
YAML
"$MESHID" ca serve --config ca.yaml > ca.log 2>&1 &
ca_pid=$!
for _ in $(seq 100); do grep -q ' grpc=' ca.log 2>/dev/null && break; sleep 0.1; done
grpc=$(grep -oE ' grpc=[0-9.]+:[0-9]+' ca.log | head -1 | sed 's/ grpc=//')
admin=$(grep -oE ' admin=[0-9.]+:[0-9]+' ca.log | head -1 | sed 's/ admin=//')
[[ -n $grpc ]] || { echo "demo failed: the CA did not start" >&2; cat ca.log >&2; exit 1; }
grep -m1 'meshid CA serving' ca.log | sed 's/^[^ ]* [^ ]* /  /'
"$MESHID" token create --config ca.yaml --spiffe-id spiffe://example.org/vm/billing --ttl 10m > join-token 2>/dev/null
echo "  one-time join token for spiffe://example.org/vm/billing: $(cut -c1-12 join-token)... (stored hashed)"

say "6. A host with no Kubernetes gets its first certificate over gRPC with the token, then renews over mTLS"
"$MESHID" cert request --ca-addr "$grpc" --ca-root ca/root-cert.pem --spiffe-id spiffe://example.org/vm/billing \
  --token-file join-token --ttl 30m --out billing
"$MESHID" cert request --ca-addr "$grpc" --ca-root ca/root-cert.pem --spiffe-id spiffe://example.org/vm/billing \
  --cert billing/cert-chain.pem --key billing/key.pem --ttl 30m --out billing-renewed
if "$MESHID" cert request --ca-addr "$grpc" --ca-root ca/root-cert.pem --spiffe-id spiffe://example.org/vm/billing \
  --token-file join-token --out billing-again >/dev/null 2>reuse.err; then
  echo "demo failed: a join token worked twice" >&2; exit 1
fi
echo "  the same join token a second time: $(sed 's/^error: //' reuse.err)"
start_server web ca/root-cert.pem
status=$(request billing-renewed ca/root-cert.pem)
wait "$server_pid" 2>/dev/null || true
server_pid=""
echo "billing (certificate from the CA server) -> web over mTLS: ${status:-no reply}"
[[ $status == *200* ]] || { echo "demo failed: the CA-issued certificate was refused" >&2; exit 1; }

say "7. The agent: one per host, holding every local workload's identity and rotating it (10 s lifetimes here)"
"$MESHID" token create --config ca.yaml --spiffe-id spiffe://example.org/meshid/agent/demo-node > agent-token 2>/dev/null
cat > agent.yaml <<YAML
trust_domain: example.org
ca: { addresses: [$grpc], root_file: ca/root-cert.pem }
credentials: { join_token_file: agent-token, agent_id: spiffe://example.org/meshid/agent/demo-node }
state_dir: agent-state
sockets: { sds: sock/sds.sock, workload_api: sock/workload.sock, admin: sock/admin.sock }
admin_listen: 127.0.0.1:0
rotation: { ttl: 10s, agent_ttl: 1h }
entries:
  - spiffe_id: spiffe://example.org/ns/shop/sa/checkout   # over SDS and the Workload API
    selectors: { uid: $(id -u) }
  - spiffe_id: spiffe://example.org/ns/shop/sa/web        # as files, for software like nginx
    file_sink: { dir: web-sink, reload_command: "echo reload >> web-sink-hook.log" }
YAML
"$MESHID" agent --config agent.yaml > agent.log 2>&1 &
agent_pid=$!
for _ in $(seq 100); do "$MESHID" agent status --config agent.yaml >/dev/null 2>&1 && break; sleep 0.1; done
"$MESHID" agent status --config agent.yaml | sed 's/^/  /'
first=$(openssl x509 -noout -serial -in web-sink/cert-chain.pem)
echo "  ... 6 s later (renewal at half the lifetime, a new key every time):"
sleep 6
"$MESHID" agent status --config agent.yaml | sed 's/^/  /'
second=$(openssl x509 -noout -serial -in web-sink/cert-chain.pem)
echo "  web-sink/cert-chain.pem: ${first#serial=} -> ${second#serial=}; reload hook ran $(wc -l < web-sink-hook.log) times"
[[ $first != "$second" ]] || { echo "demo failed: the file sink did not rotate" >&2; cat agent.log >&2; exit 1; }
openssl verify -CAfile web-sink/root-cert.pem -untrusted web-sink/cert-chain.pem web-sink/cert-chain.pem | sed 's/^/  /'
kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""

say "8. What the CA measured (/metrics, /debug/ca)"
curl -s "http://$admin/metrics" | grep -E '^(meshid_ca_requests_total|meshid_ca_denials_total|citadel_server_success_cert_issuance_count|meshid_ca_trust_bundle_version)' | sed 's/^/  /'
echo "  issuances recorded: $(curl -s "http://$admin/debug/ca" | jq .issuances_recorded)"
kill -TERM "$ca_pid"; wait "$ca_pid" 2>/dev/null || true; ca_pid=""
echo "  CA stopped on SIGTERM: $(tail -1 ca.log | sed 's/^[^ ]* [^ ]* //')"

say "Done. Files are in $OUT"
