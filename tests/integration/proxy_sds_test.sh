#!/usr/bin/env bash
# `meshid proxy` taking its certificates over SDS (PROTOCOLS.md §2):
#  A. against a scripted SDS server (tests/interop/sds_server_script.js, node
#     grpc-js): a key that does not match is NACKed (error_detail, the last
#     accepted version, the response's nonce) and never served; a good pair is
#     ACKed and served; a bundle-only response is ACKed; a secret not asked
#     for is NACKed naming the last accepted version; a stream the server
#     ends is reopened with the last accepted version, an empty nonce and the
#     node again.
#  B. against the real agent: the proxy starts before the agent and waits;
#     once the agent is up the proxy listens and serves the agent's
#     certificate to openssl s_client; a proxy with no SDS server in time
#     exits with a clear error.
#   bash tests/integration/proxy_sds_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=60
M=$MESHID

"$M" ca init --trust-domain $TD --out ca >/dev/null
"$M" cert issue --ca ca --spiffe-id spiffe://$TD/ns/web/sa/web --out script/good --ttl 1h >/dev/null
"$M" cert issue --ca ca --spiffe-id spiffe://$TD/ns/web/sa/web --out script/mismatch --ttl 1h >/dev/null
cat ca/root-cert.pem >script/good/root-cert.pem
"$M" cert issue --ca ca --spiffe-id spiffe://$TD/ns/shop/sa/client --out client --ttl 1h >/dev/null
BACKEND=$(free_port)
mkdir www && echo hello >www/index.html
start_server backend.log python3 -m http.server "$BACKEND" --bind 127.0.0.1 --directory www

# --- A: the scripted server ---------------------------------------------------
start_server script.log node "$INTEROP/sds_server_script.js" --socket "$TMP/script.sock" \
  --dir script --duration-ms 6000
SCRIPT_PID=$LAST_SERVER_PID
for ((i = 0; i < 100; i++)); do [[ -S script.sock ]] && break; sleep 0.05; done
cat >a.yaml <<YAML
trust_domain: $TD
certificates: {sds: {socket: script.sock, initial_fetch_timeout: 5s}}
admin_listen: 127.0.0.1:0
workers: 1
inbound: [{name: in, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND}]
YAML
start_server a.log "${PROXY[@]}" --config a.yaml
wait_for_log a.log "meshid proxy running" || { cat a.log; finish; }
IN=$(grep -oE 'in=inbound:STRICT:[0-9]+' a.log | grep -oE '[0-9]+$')
AADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' a.log | cut -d: -f2)
check_output_contains "A: the ACKed certificate is served (openssl s_client verifies it)" \
  "Verify return code: 0" sh -c "echo | timeout 5 openssl s_client -connect 127.0.0.1:$IN \
  -cert client/cert-chain.pem -cert_chain client/cert-chain.pem -key client/key.pem -CAfile ca/root-cert.pem 2>&1"
expect_eq "A: the certificate served is the good one" \
  "$(openssl x509 -in script/good/cert-chain.pem -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')" \
  "$(curl -s "http://127.0.0.1:$AADMIN/certs" | jq -r '.certificates[0].cert_chain[0].serial_number' | sed 's/^0*//')"
wait "$SCRIPT_PID"
result=$(grep '^{' script.log | tail -1)
echo "info: $result" | cut -c1-3000
expect_eq "A: the SDS exchange went as an Envoy-style client's must" "true null" \
  "$(jq -r '"\(.ok) \(.why)"' <<<"$result")"
expect_contains "A: the NACK says why" "$(jq -r '.requests[1].error_message' <<<"$result")" \
  "does not belong"
expect_contains "A: the NACK is logged" "$(cat a.log)" "SDS update refused (NACK)"
r=$(curl -s "http://127.0.0.1:$AADMIN/metrics" | awk '/^meshid_proxy_certificate_reloads_total\{result="refused"\}/ {print $2}')
expect_eq "A: both refusals counted" "2" "$r"

# --- B: the real agent ----------------------------------------------------------
write_ca_config 0
cat >b.yaml <<YAML
trust_domain: $TD
certificates: {sds: {socket: sock/sds.sock, initial_fetch_timeout: 20s}}
admin_listen: 127.0.0.1:0
workers: 1
inbound: [{name: in, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND}]
YAML
mkdir -p sock
start_server b.log "${PROXY[@]}" --config b.yaml   # before the agent exists
sleep 1
expect_lacks "B: no listener without a certificate" "$(cat b.log)" "meshid proxy running"
start_ca ca.log || finish
write_agent_config 1h "  - {spiffe_id: spiffe://$TD/ns/web/sa/web, selectors: {uid: $(id -u), path: $(readlink -f "${PROXY[0]}")}}
  - {spiffe_id: spiffe://$TD/ns/client/sa/curl, file_sink: {dir: curl}}"
start_agent agent.log agent.yaml || finish
for ((i = 0; i < 200; i++)); do grep -q "meshid proxy running" b.log && break; sleep 0.05; done
expect_contains "B: the proxy listens once the agent serves it" "$(cat b.log)" "meshid proxy running"
BIN=$(grep -oE 'in=inbound:STRICT:[0-9]+' b.log | grep -oE '[0-9]+$')
expect_true "B: the agent wrote the client's files" wait_ready 10
check_output_contains "B: curl with an agent-issued client certificate gets through the SDS-fed proxy" \
  "hello" curl -sS -k --max-time 5 --cert curl/cert-chain.pem --key curl/key.pem "https://127.0.0.1:$BIN/"
check_output_contains "B: openssl s_client verifies the proxy's chain against the agent's bundle" \
  "Verify return code: 0" sh -c "echo | timeout 5 openssl s_client -connect 127.0.0.1:$BIN \
  -CAfile curl/root-cert.pem -cert curl/cert-chain.pem -cert_chain curl/cert-chain.pem -key curl/key.pem 2>&1"
agent_serial=$(agent_get /certs | jq -r '.certificates[].cert_chain[0] | select(.subject_alt_names[0].uri=="spiffe://'$TD'/ns/web/sa/web") | .serial_number' 2>/dev/null)
BADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' b.log | cut -d: -f2)
expect_eq "B: the proxy serves the serial the agent holds" "$agent_serial" \
  "$(curl -s "http://127.0.0.1:$BADMIN/certs" | jq -r '.certificates[0].cert_chain[0].serial_number')"

cat >c.yaml <<YAML
trust_domain: $TD
certificates: {sds: {socket: nowhere.sock, initial_fetch_timeout: 1s}}
admin_listen: 127.0.0.1:0
inbound: [{name: in, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND}]
YAML
check_fails_with "C: no SDS server: a clear error, not a silent wait" 1 \
  "no certificate from the agent's SDS socket" "${PROXY[@]}" --config c.yaml
finish
