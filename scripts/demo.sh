#!/usr/bin/env bash
# The demo: make a CA, issue two workload identities, and prove them with a
# real mutual-TLS handshake between openssl s_server and openssl s_client;
# then show that a certificate from another root is refused; run the CA
# server, and an agent that keeps workloads' certificates rotating; and two
# services talking through two meshid proxies while those certificates rotate.
set -euo pipefail
MESHID=$(realpath "${1:-build/meshid}")
OUT=$(realpath -m "${DEMO_DIR:-build/demo}")
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"

server_pid=""
ca_pid=""
agent_pid=""
web_pid=""
proxy_a_pid=""
proxy_b_pid=""
sampler_pids=()
cleanup() {
  [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null
  for pid in "${sampler_pids[@]}" $proxy_a_pid $proxy_b_pid $web_pid; do kill -TERM "$pid" 2>/dev/null; done
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
rotation: { ttl: 10s, agent_ttl: 1h, initial_backoff: 200ms, max_backoff: 1s }
entries:
  - spiffe_id: spiffe://example.org/ns/shop/sa/checkout   # over SDS and the Workload API,
    selectors: { uid: $(id -u) }                          # and as files for step 8's proxy
    file_sink: { dir: checkout-sink }
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

say "8. Two services through two meshid proxies, on the agent's rotating certificates (A over SDS, B from files)"
# web: a few lines of Python on loopback, answering with its name. It sits
# behind proxy B, whose STRICT inbound listener admits checkout alone.
# checkout: curl to proxy A's outbound listener (plaintext on loopback), which
# originates mTLS to proxy B and expects web's SPIFFE ID.
WEB_ID=spiffe://example.org/ns/shop/sa/web
CHECKOUT_ID=spiffe://example.org/ns/shop/sa/checkout
LOOP_S=${DEMO_PROXY_SECONDS:-25}   # at 10 s lifetimes, renewed at half: ~4 rotations
cat > web.py <<'PY'
import http.server
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"web: hello, this is the shop's web service\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Web)
print("web listening on 127.0.0.1:%d" % server.server_port, flush=True)
server.serve_forever()
PY
timeout 120 python3 web.py > web.log 2>&1 &
web_pid=$!
# Waits (bounded) for LOG to match the regex, then prints the first match.
wait_for() {
  local log=$1 re=$2 m
  for _ in $(seq 100); do
    m=$(grep -m1 -oE "$re" "$log" 2>/dev/null || true)
    [[ -n $m ]] && { echo "$m"; return 0; }
    sleep 0.1
  done
  return 1
}
web_port=$(wait_for web.log 'listening on 127\.0\.0\.1:[0-9]+' | grep -oE '[0-9]+$') \
  || { echo "demo failed: the web service did not start" >&2; cat web.log >&2; exit 1; }
for _ in $(seq 50); do [[ -s checkout-sink/cert-chain.pem && -s checkout-sink/key.pem ]] && break; sleep 0.1; done

# start_proxy X: runs `meshid proxy` on proxy-X.yaml, records its pid in
# proxy_X_pid for the cleanup, and sets running_line to its start-up line.
start_proxy() {
  timeout 120 "$MESHID" proxy --config "proxy-$1.yaml" > "proxy-$1.log" 2>&1 &
  printf -v "proxy_$1_pid" '%s' "$!"
  running_line=$(wait_for "proxy-$1.log" 'meshid proxy running.*') \
    || { echo "demo failed: proxy ${1^^} did not start" >&2; cat "proxy-$1.log" >&2; exit 1; }
}

cat > proxy-b.yaml <<YAML
# Proxy B, web's sidecar: STRICT mTLS in, plaintext to web on loopback.
trust_domain: example.org
certificates: { cert_file: web-sink/cert-chain.pem, key_file: web-sink/key.pem,
                bundle_file: web-sink/root-cert.pem, poll_interval: 200ms }
admin_listen: 127.0.0.1:0
workers: 1
inbound:
  - { name: in, listen: 127.0.0.1:0, forward: 127.0.0.1:$web_port, mode: STRICT,
      allow: [$CHECKOUT_ID] }
YAML
start_proxy b
b_in=$(grep -oE 'in=inbound:STRICT:[0-9]+' <<<"$running_line" | grep -oE '[0-9]+$')
b_admin=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' <<<"$running_line" | sed 's/admin=//')

cat > proxy-a.yaml <<YAML
# Proxy A, checkout's sidecar: plaintext in on loopback, mTLS out to proxy B.
trust_domain: example.org
# Its certificates come over SDS from the agent's socket (checkout's entry
# selects this uid), as Envoy gets them in Istio; proxy B reads files.
certificates: { sds: { socket: sock/sds.sock } }
admin_listen: 127.0.0.1:0
workers: 1
outbound:
  - { name: web, listen: 127.0.0.1:0, destination: 127.0.0.1:$b_in, expected_ids: [$WEB_ID] }
YAML
start_proxy a
a_out=$(grep -oE 'web=outbound:[0-9]+' <<<"$running_line" | grep -oE '[0-9]+$')
a_admin=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' <<<"$running_line" | sed 's/admin=//')
echo "  web on 127.0.0.1:$web_port <- proxy B (STRICT, allow: checkout) on 127.0.0.1:$b_in"
echo "  checkout (curl) -> proxy A (outbound, expects web) on 127.0.0.1:$a_out -> mTLS -> proxy B"

# The serial each proxy holds, sampled from its /certs every 0.25 s.
sample_serials() {
  local end=$((SECONDS + LOOP_S))
  while ((SECONDS < end)); do
    curl -s --max-time 2 "http://$1/certs" | jq -r '.certificates[0].cert_chain[0].serial_number // empty' >> "$2" || true
    sleep 0.25
  done
}
: > serials-a.txt; : > serials-b.txt
sample_serials "$a_admin" serials-a.txt & sampler_pids+=($!)
sample_serials "$b_admin" serials-b.txt & sampler_pids+=($!)
echo "  checkout -> web for ${LOOP_S} s, a new connection (curl -> A, A -> B) per request ..."
ok=0 failed=0
end=$((SECONDS + LOOP_S))
while ((SECONDS < end)); do
  code=$(curl -s -o reply.txt -w '%{http_code}' --max-time 5 -H 'Connection: close' "http://127.0.0.1:$a_out/") || true
  if [[ $code == 200 ]] && grep -q '^web:' reply.txt; then
    ok=$((ok + 1))
  else
    failed=$((failed + 1))
    echo "$(date +%T.%3N) http=${code:-none}" >> failures.txt
  fi
done
wait "${sampler_pids[@]}" 2>/dev/null || true; sampler_pids=()
echo "  web answered: $(cat reply.txt 2>/dev/null | head -1)"
echo "  requests: $ok ok, $failed failed"
serials() { sort -u "$1" | grep -c . || true; }
# The last 8 hex digits: a serial starts with its issue time (docs/PKI.md), so
# the first ones are alike for certificates issued minutes apart.
in_order() { awk 'NF && !seen[$0]++ { printf "%s%s", (n++ ? " -> " : ""), substr($0, length($0) - 7) }' "$1"; }
n_a=$(serials serials-a.txt) n_b=$(serials serials-b.txt)
echo "  distinct leaf serials served (sampled from /certs): proxy A (checkout) $n_a, proxy B (web) $n_b"
echo "    A: $(in_order serials-a.txt)"
echo "    B: $(in_order serials-b.txt)"
stats_a=$(curl -s --max-time 5 "http://$a_admin/stats") stats_b=$(curl -s --max-time 5 "http://$b_admin/stats")
hs_a=$(jq '.listeners.web.handshakes' <<<"$stats_a") res_a=$(jq '.listeners.web.resumed_handshakes' <<<"$stats_a")
echo "  handshakes: proxy A out $hs_a ($res_a resumed, $((hs_a - res_a)) full: a new certificate drops the old session)," \
  "proxy B in $(jq '.listeners.in.handshakes' <<<"$stats_b")"
echo "  connection errors: proxy A $(jq '[.listeners[].errors[]] | add' <<<"$stats_a"), proxy B $(jq '[.listeners[].errors[]] | add' <<<"$stats_b")"
if ((failed > 0)); then
  echo "demo failed: $failed of $((ok + failed)) requests through the proxies failed" >&2
  head -5 failures.txt >&2; exit 1
fi
if ((ok == 0 || n_a < 2 || n_b < 2)); then
  echo "demo failed: expected requests across at least 2 certificates per proxy (A: $n_a, B: $n_b)" >&2; exit 1
fi

# An identity from the same CA, but not on web's allow list.
"$MESHID" cert issue --ca ca --spiffe-id spiffe://example.org/ns/shop/sa/intruder --ttl 10m --out shop-intruder >/dev/null
# b_error REASON: proxy B's inbound error count for REASON.
b_error() { curl -s --max-time 5 "http://$b_admin/stats" | jq ".listeners.in.errors.$1"; }
# b_error_above REASON N: waits (up to 2 s) for the count to pass N, prints it.
b_error_above() {
  local n
  for _ in $(seq 20); do n=$(b_error "$1"); ((n > $2)) && break; sleep 0.1; done
  echo "$n"
}
before=$(b_error authz_denied)
port=$b_in
status=$(request shop-intruder ca/root-cert.pem)
after=$(b_error_above authz_denied "$before")
echo "  intruder (spiffe://example.org/ns/shop/sa/intruder, same CA) -> proxy B: ${status:-refused}; authz_denied $before -> $after"
if [[ $status == *200* ]] || ((after <= before)); then
  echo "demo failed: proxy B did not refuse an identity off its allow list" >&2; exit 1
fi
before=$(b_error plaintext_refused)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$b_in/") || true
after=$(b_error_above plaintext_refused "$before")
echo "  plaintext curl -> proxy B's STRICT port: http=${code:-none}; plaintext_refused $before -> $after"
if [[ $code == 200 ]] || ((after <= before)); then
  echo "demo failed: proxy B's STRICT listener accepted plaintext" >&2; exit 1
fi
for pid in $proxy_a_pid $proxy_b_pid $web_pid; do kill -TERM "$pid" 2>/dev/null || true; done
wait $proxy_a_pid $proxy_b_pid $web_pid 2>/dev/null || true; proxy_a_pid="" proxy_b_pid="" web_pid=""
kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""

say "9. What the CA measured (/metrics, /debug/ca)"
curl -s "http://$admin/metrics" | grep -E '^(meshid_ca_requests_total|meshid_ca_denials_total|citadel_server_success_cert_issuance_count|meshid_ca_trust_bundle_version)' | sed 's/^/  /'
echo "  issuances recorded: $(curl -s "http://$admin/debug/ca" | jq .issuances_recorded)"
kill -TERM "$ca_pid"; wait "$ca_pid" 2>/dev/null || true; ca_pid=""
echo "  CA stopped on SIGTERM: $(tail -1 ca.log | sed 's/^[^ ]* [^ ]* //')"

say "Done. Files are in $OUT"
