#!/usr/bin/env bash
# Rotation under load, counted on new connections (TESTING.md §2): CA +
# agent + two proxies (client side outbound -> server side inbound, STRICT
# with an allow list) with 5-second certificates, for 60 s: 30 s with every
# handshake a full one (resumption off at the client-side proxy), then 30 s
# with resumption on. The server-side proxy takes its certificates from the
# agent over SDS (files when PROXY_BIN, a proxy without gRPC, is under
# test), the client side from the agent's file sink. Every request is a new
# TCP + TLS connection at both hops (curl -> outbound is a new connection, and
# the outbound proxy opens a new mTLS connection for it). Zero connect,
# handshake, non-2xx and timeout errors; at least 10 distinct leaf serials
# seen on each side (sampled from each proxy's /certs); the proxies' counters
# agree with what the client saw.
#   bash tests/integration/proxy_rotation_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=90
LOOP_S=30  # per phase
SERVER_ID=spiffe://$TD/ns/web/sa/web
CLIENT_ID=spiffe://$TD/ns/client/sa/curl

write_ca_config 0
start_ca ca.log || finish
write_agent_config 5s "  - {spiffe_id: $SERVER_ID, file_sink: {dir: server},
     selectors: {uid: $(id -u), path: $(readlink -f "${PROXY[0]}")}}
  - {spiffe_id: $CLIENT_ID, file_sink: {dir: client}}"
start_agent agent.log agent.yaml || finish
expect_true "agent wrote both identities" wait_ready 10

mkdir www
echo hello >www/index.html
BACKEND=$(free_port)
start_server backend.log python3 -m http.server "$BACKEND" --bind 127.0.0.1 --directory www
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$BACKEND/" && break; sleep 0.05; done

if [[ -n ${PROXY_BIN:-} ]]; then
  SERVER_CERTS="{cert_file: server/cert-chain.pem, key_file: server/key.pem,
                 bundle_file: server/root-cert.pem, poll_interval: 100ms}"
else
  SERVER_CERTS="{sds: {socket: sock/sds.sock, initial_fetch_timeout: 10s}}"
fi
cat >server-proxy.yaml <<YAML
trust_domain: $TD
certificates: $SERVER_CERTS
admin_listen: 127.0.0.1:0
workers: 2
inbound:
  - {name: in, listen: 127.0.0.1:0, forward: 127.0.0.1:$BACKEND, mode: STRICT,
     allow: ["spiffe://$TD/ns/client/"]}
YAML
start_server server-proxy.log "${PROXY[@]}" --config server-proxy.yaml
wait_for_log server-proxy.log "meshid proxy running" || { cat server-proxy.log; finish; }
IN=$(grep -oE 'in=inbound:STRICT:[0-9]+' server-proxy.log | grep -oE '[0-9]+$')
SADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' server-proxy.log | cut -d: -f2)
cat >client-proxy.yaml <<YAML
trust_domain: $TD
certificates: {cert_file: client/cert-chain.pem, key_file: client/key.pem,
               bundle_file: client/root-cert.pem, poll_interval: 100ms}
admin_listen: 127.0.0.1:0
workers: 2
outbound:
  - {name: full, listen: 127.0.0.1:0, destination: 127.0.0.1:$IN, expected_ids: [$SERVER_ID],
     resumption: false}
  - {name: out, listen: 127.0.0.1:0, destination: 127.0.0.1:$IN, expected_ids: [$SERVER_ID]}
YAML
start_server client-proxy.log "${PROXY[@]}" --config client-proxy.yaml
wait_for_log client-proxy.log "meshid proxy running" || { cat client-proxy.log; finish; }
OUT=$(grep -oE ' out=outbound:[0-9]+' client-proxy.log | grep -oE '[0-9]+$')
FULL=$(grep -oE ' full=outbound:[0-9]+' client-proxy.log | grep -oE '[0-9]+$')
[[ -z ${PROXY_BIN:-} ]] && expect_true "server proxy: certificates over SDS" grep -q "certificate loaded" server-proxy.log
CADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' client-proxy.log | cut -d: -f2)

sample_serials() {  # PORT FILE: the proxy's current serial every 0.25 s
  local end=$((SECONDS + 2 * LOOP_S))
  while ((SECONDS < end)); do
    curl -s --max-time 2 "http://127.0.0.1:$1/certs" | jq -r '.certificates[0].cert_chain[0].serial_number' >>"$2"
    sleep 0.25
  done
}
sample_serials "$SADMIN" server-serials.txt &
s1=$!
sample_serials "$CADMIN" client-serials.txt &
s2=$!
ok=0 bad=0
run_phase() {  # PORT
  local end=$((SECONDS + LOOP_S)) code rc n=0
  while ((SECONDS < end)); do
    code=$(curl -s -o body.txt -w '%{http_code}' --max-time 5 -H 'Connection: close' \
      "http://127.0.0.1:$1/")
    rc=$?
    n=$((n + 1))
    if [[ $rc -eq 0 && $code == 200 ]] && grep -q hello body.txt; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      echo "$(date +%T.%3N) port=$1 rc=$rc http=$code" >>failures.txt
    fi
  done
  PHASE_REQUESTS=$n
}
run_phase "$FULL"  # every handshake a full one
full_requests=$PHASE_REQUESTS
run_phase "$OUT"   # resumption on
resume_requests=$PHASE_REQUESTS
wait $s1 $s2
echo "info: $ok requests ok, $bad failed; serials: server $(sort -u server-serials.txt | wc -l), client $(sort -u client-serials.txt | wc -l)"
expect_true "requests made ($ok)" test "$ok" -ge 200
expect_eq "zero connect, handshake, non-2xx and timeout errors on new connections" "0" "$bad"
[[ $bad -eq 0 ]] || head -5 failures.txt
n=$(sort -u server-serials.txt | grep -c .)
expect_true "server side: at least 10 distinct leaf serials ($n)" test "$n" -ge 10
n=$(sort -u client-serials.txt | grep -c .)
expect_true "client side: at least 10 distinct leaf serials ($n)" test "$n" -ge 10

sstats=$(curl -s "http://127.0.0.1:$SADMIN/stats")
cstats=$(curl -s "http://127.0.0.1:$CADMIN/stats")
errors() { jq '[.listeners[].errors[]] | add' <<<"$1"; }
expect_eq "server proxy: no connection error of any reason" "0" "$(errors "$sstats")"
expect_eq "client proxy: no connection error of any reason" "0" "$(errors "$cstats")"
expect_eq "server proxy handshakes = requests" "$ok" "$(jq '.listeners.in.handshakes' <<<"$sstats")"
expect_eq "client proxy handshakes = requests" "$ok" \
  "$(jq '.listeners.out.handshakes + .listeners.full.handshakes' <<<"$cstats")"
expect_eq "phase 1: $full_requests handshakes, none resumed" "$full_requests 0" \
  "$(jq -r '"\(.listeners.full.handshakes) \(.listeners.full.resumed_handshakes)"' <<<"$cstats")"
expect_eq "no connection left open" "0" "$(jq '.listeners.in.active_connections' <<<"$sstats")"
# The client proxy offers its last session on every new connection: between
# rotations most handshakes resume, after each a full one follows (TESTING.md
# §2: the run covers new connections with resumption on, too).
resumed=$(jq '.listeners.out.resumed_handshakes' <<<"$cstats")
echo "info: phase 2: $resumed of $resume_requests outbound handshakes resumed a session"
expect_true "resumed handshakes were part of the run ($resumed)" test "$resumed" -ge 10
expect_true "and full handshakes after rotations ($((resume_requests - resumed)))" \
  test "$((resume_requests - resumed))" -ge 5
r=$(curl -s "http://127.0.0.1:$SADMIN/metrics" | awk '/^meshid_proxy_certificate_reloads_total\{result="ok"\}/ {print $2}')
expect_true "server proxy reloaded its certificate at least 10 times ($r)" test "${r%.*}" -ge 10
_stop_servers
for log in server-proxy.log client-proxy.log; do
  expect_lacks "$log: no sanitizer report" "$(cat $log)" "Sanitizer"
  expect_lacks "$log: no undefined behaviour" "$(cat $log)" "runtime error"
done
finish
