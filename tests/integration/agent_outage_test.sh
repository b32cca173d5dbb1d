#!/usr/bin/env bash
# The agent when the CA is not there (issue 4), in real time with seconds-long
# certificates:
#   A. started before the CA, with a dead CA address listed first: the Envoy
#      stand-in's stream opened before any certificate exists is held and then
#      receives one; the Workload API answers UNAVAILABLE before issue; the
#      agent fails over to the live address.
#   B. CA stopped across a renewal point: the agent keeps serving the
#      certificate in hand (the go-spiffe stand-in sees no gap), logs and
#      counts failures; CA back: the next try succeeds.
#   C. CA stopped past expiry: the expired certificate is withdrawn and
#      reported (status, /readyz, metric), never served; CA back: recovered.
#   D. bootstrap by pinned root fingerprint with JWT credentials re-read from
#      their file; a wrong pin is refused; an identity the token does not
#      prove is refused by the CA.
#   bash tests/integration/agent_outage_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=80
WEB=spiffe://$TD/ns/web/sa/web
ISS=https://kubernetes.default.svc
P=$(free_port)
DEAD=$(free_port)

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key 2>/dev/null
node "$JWT" jwks --key sa.key --kid k1 >jwks.json
write_ca_config "$P" "authentication: {kubernetes: {jwks_file: jwks.json, issuer: $ISS}}"
start_ca ca.log || finish
stop_server "$CA_PID"  # the root exists now; the CA is down
"$MESHID" token create --config ca.yaml --spiffe-id "$AGENT_ID" >join.token 2>/dev/null

cat >agent.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$DEAD, 127.0.0.1:$P], root_file: $ROOT, timeout: 2s}
credentials: {join_token_file: join.token, agent_id: $AGENT_ID}
state_dir: agent-state
sockets: {sds: sock/sds.sock, workload_api: sock/workload.sock, admin: sock/admin.sock}
admin_listen: 127.0.0.1:0
rotation: {ttl: 8s, agent_ttl: 1h, initial_backoff: 200ms, max_backoff: 500ms}
entries:
  - spiffe_id: $WEB
    selectors: {uid: $(id -u)}
YAML

########## A: before the CA ##########
start_agent agent.log agent.yaml || finish
node "$SDS" --socket sock/sds.sock --names default --duration-ms 6000 --scenario hold \
  --expect response >hold.json 2>&1 &
hold_pid=$!
run node "$WL" --socket sock/workload.sock --duration-ms 1000 --scenario expect-error \
  --expect-code UNAVAILABLE
expect_eq "A: Workload API before issue -> UNAVAILABLE" "0" "$RC"
[[ $RC -eq 0 ]] || echo "$OUT"
sleep 1
start_ca ca2.log || finish
expect_true "A: agent gets its certificates once the CA is up" wait_ready 10
wait $hold_pid
hold_rc=$?
expect_eq "A: SDS stream opened before the secret existed received it (hold)" "0" "$hold_rc"
first=$(json_field "$(cat hold.json)" '.streams.default.first_response_ms')
expect_true "A: ...only after the CA came up (first response at $first ms)" test "${first:-0}" -ge 1000
expect_eq "A: failed over from the dead address to the live one" "127.0.0.1:$P" \
  "$(json_field "$(agent_get /status)" .ca)"
expect_contains "A: the dead address was logged" "$(cat agent.log)" "CA 127.0.0.1:$DEAD failed"

########## B: CA down across a renewal ##########
node "$WL" --socket sock/workload.sock --duration-ms 16000 --expect-id "$WEB" \
  --trust-domain $TD >watch.json 2>&1 &
watch_pid=$!
# Stop the CA right after a rotation: renewal falls ~4 s later, expiry 8 s later.
n=$(grep -c "certificate for $WEB serial" agent.log)
wait_for_log_count agent.log "certificate for $WEB serial" $((n + 1)) ||
  wait_for_log_count agent.log "certificate for $WEB serial" $((n + 1))
stop_server "$CA_PID"
serial_before=$(json_field "$(agent_get /status)" ".identities[] | select(.spiffe_id == \"$WEB\") | .serial")
failures() {
  local f
  f=$(metric_value "meshid_agent_rotation_failures_total{spiffe_id=\"$WEB\"}")
  echo "${f%.*}"
}
# Keep the CA down until the agent has failed twice at its renewal point
# (timing from the system, not a sleep), then bring it back well before expiry.
for ((i = 0; i < 80; i++)); do
  (($(failures) >= 2)) && break
  sleep 0.1
done
status=$(agent_get /status)
expect_eq "B: CA down past the renewal point: the certificate in hand is still served" \
  "ok|$serial_before" "$(json_field "$status" ".identities[] | select(.spiffe_id == \"$WEB\") | (if .state == \"retrying\" then \"ok\" else .state end) + \"|\" + .serial")"
expect_true "B: failures counted ($(failures))" test "$(failures)" -ge 2
expect_contains "B: failures logged, old certificate still served" "$(cat agent.log)" \
  "the current certificate is still served"
start_ca ca3.log || finish
web_state() {
  json_field "$(agent_get /status)" ".identities[] | select(.spiffe_id == \"$WEB\") | .state"
}
for ((i = 0; i < 30; i++)); do  # the retry backoff is at most 0.5 s, gRPC's reconnect 1 s
  [[ $(web_state) == ok ]] && break
  sleep 0.1
done
expect_eq "B: CA back: the next try succeeded within 3 s" "ok" "$(web_state)"
wait $watch_pid
watch_rc=$?
expect_eq "B: the Workload API client saw no expired moment and no gap (exit 0)" "0" "$watch_rc"
[[ $watch_rc -eq 0 ]] || head -c 2000 watch.json

########## C: CA down past expiry ##########
stop_server "$CA_PID"
sleep 9
status=$(agent_get /status)
expect_eq "C: expired certificate reported" "expired" \
  "$(json_field "$status" ".identities[] | select(.spiffe_id == \"$WEB\") | .state")"
expect_eq "C: /readyz says not ready" "503" \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AGENT_ADMIN/readyz")"
run node "$WL" --socket sock/workload.sock --duration-ms 1000 --scenario expect-error \
  --expect-code UNAVAILABLE
expect_eq "C: the expired certificate is not served (UNAVAILABLE)" "0" "$RC"
e=$(metric_value "meshid_agent_certificate_expirations_total{spiffe_id=\"$WEB\"}")
expect_true "C: expiry counted ($e)" test "${e%.*}" -ge 1
expect_contains "C: expiry logged" "$(cat agent.log)" "is no longer served"
start_ca ca4.log || finish
expect_true "C: CA back: recovered over mTLS with the agent's own SVID" wait_ready 10
stop_server "$AGENT_PID"

########## D: pinned root, JWT credentials ##########
PIN=$(openssl x509 -in $ROOT -outform der | sha256sum | cut -d' ' -f1)
echo "not-a-jwt" >sa.token
cat >agent2.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$P], pinned_sha256: "$PIN"}
credentials: {jwt_token_file: sa.token}
sockets: {workload_api: sock2/workload.sock}
admin_listen: 127.0.0.1:0
rotation: {ttl: 1h, initial_backoff: 200ms, max_backoff: 500ms}
entries:
  - spiffe_id: $WEB
    selectors: {uid: $(id -u)}
  - spiffe_id: spiffe://$TD/ns/web/sa/api
    selectors: {uid: 4242}
YAML
start_agent agent2.log agent2.yaml || finish
expect_contains "D: bundle bootstrapped by the pinned fingerprint" "$(cat agent2.log)" \
  "matched the pinned root"
sleep 1
status=$(agent_get /status)
expect_contains "D: a bad token is refused by the CA (UNAUTHENTICATED)" \
  "$(json_field "$status" '.identities[0].last_error')" "UNAUTHENTICATED"
node "$JWT" sign --key sa.key --kid k1 --iss $ISS --aud istio-ca --ns web --sa web >sa.token
sleep 1.5
status=$(agent_get /status)
expect_eq "D: the token file is re-read: a fresh token works without a restart" "ok" \
  "$(json_field "$status" ".identities[] | select(.spiffe_id == \"$WEB\") | .state")"
expect_contains "D: an identity the token does not prove is refused" \
  "$(json_field "$status" '.identities[] | select(.spiffe_id | endswith("/api")) | .last_error')" \
  "PERMISSION_DENIED"
stop_server "$AGENT_PID"

sed -i "s/$PIN/$(printf '0%.0s' {1..64})/" agent2.yaml
run timeout 10 "$MESHID" agent --config agent2.yaml
expect_true "D: a wrong pin: the agent refuses to start (exit $RC)" test "$RC" -eq 1
expect_contains "D: ...saying why" "$OUT$ERR" "pinned root"
finish
