#!/usr/bin/env bash
# The demo: make a CA, issue two workload identities, and prove them with a
# real mutual-TLS handshake between openssl s_server and openssl s_client;
# then show that a certificate from another root is refused.
set -euo pipefail
MESHID=$(realpath "${1:-build/meshid}")
OUT=$(realpath -m "${DEMO_DIR:-build/demo}")
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"

server_pid=""
cleanup() { [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null; wait 2>/dev/null; true; }
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

say "Done. Files are in $OUT"
