#!/usr/bin/env bash
# Real time, 6-second certificates (issue 4): CA + agent (join token, then
# mTLS with its own SVID, acting for delegated workloads). For 30 s, at once:
#   - an Envoy stand-in (tests/interop/envoy_sds.js) holds SDS streams for
#     default and ROOTCA;
#   - a go-spiffe stand-in (tests/interop/workload_api.js) holds the Workload
#     API streams;
#   - a file sink is sampled every 0.25 s and its reload hook logs each run.
# Each must see at least 4 distinct certificates, each chaining to the bundle
# it was sent, never an expired one (the harnesses check gaps themselves).
#   bash tests/integration/agent_rotation_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=80
WEB=spiffe://$TD/ns/web/sa/web
FILES=spiffe://$TD/ns/files/sa/nginx
WATCH_MS=30000

write_ca_config 0
start_ca ca.log || finish
"$MESHID" token create --config ca.yaml --spiffe-id "$AGENT_ID" >join.token 2>/dev/null

cat >agent.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$GRPC], root_file: $ROOT}
credentials: {join_token_file: join.token, agent_id: $AGENT_ID}
state_dir: agent-state
sockets: {sds: sock/sds.sock, workload_api: sock/workload.sock, admin: sock/admin.sock}
admin_listen: 127.0.0.1:0
rotation: {ttl: 6s, agent_ttl: 6s, initial_backoff: 200ms, max_backoff: 1s}
entries:
  - spiffe_id: $WEB
    selectors: {uid: $(id -u)}
  - spiffe_id: $FILES
    file_sink:
      dir: sink
      combined_file: tls.pem
      reload_command: "openssl x509 -noout -serial -in sink/cert-chain.pem >> hooks.log"
bundle_sinks:
  - path: bundle/root-cert.pem
YAML
start_agent agent.log agent.yaml || finish
expect_true "agent holds every identity within 10 s" wait_ready 10

status=$(agent_get /status)
expect_eq "agent SVID came from the join token" "ok" \
  "$(json_field "$status" ".identities[] | select(.spiffe_id == \"$AGENT_ID\") | .state")"
expect_eq "agent SVID stored 0600" "600" "$(stat -c %a agent-state/agent-key.pem)"
expect_eq "SDS socket is connectable by every local user" "666" "$(stat -c %a sock/sds.sock)"
expect_eq "Workload API socket is connectable by every local user" "666" \
  "$(stat -c %a sock/workload.sock)"
expect_eq "admin socket is owner-only" "600" "$(stat -c %a sock/admin.sock)"

# The three consumers, at once, for 30 s.
node "$SDS" --socket sock/sds.sock --names default,ROOTCA --duration-ms $WATCH_MS \
  --events sds-events.jsonl >sds.json 2>sds.err &
sds_pid=$!
node "$WL" --socket sock/workload.sock --duration-ms $WATCH_MS --expect-id "$WEB" \
  --trust-domain $TD >wl.json 2>wl.err &
wl_pid=$!
sink_serials=()
sink_bad=0
end=$((SECONDS + WATCH_MS / 1000))
while ((SECONDS < end)); do
  s=$(openssl x509 -noout -serial -in sink/cert-chain.pem 2>/dev/null)
  last=${#sink_serials[@]}
  if [[ -n $s ]] && { ((last == 0)) || [[ ${sink_serials[last - 1]} != "$s" ]]; }; then
    sink_serials+=("$s")
  fi
  # The combined file is one rename: key and leaf always match (read it once).
  combined=$(cat sink/tls.pem)
  k=$(openssl pkey -pubout <<<"$combined" 2>/dev/null | sha256sum)
  c=$(openssl x509 -noout -pubkey <<<"$combined" 2>/dev/null | sha256sum)
  [[ -n $combined && $k == "$c" ]] || sink_bad=$((sink_bad + 1))
  sleep 0.25
done
wait $sds_pid
sds_rc=$?
wait $wl_pid
wl_rc=$?

sds=$(cat sds.json)
expect_eq "SDS harness: no violation in 30 s (exit 0)" "0" "$sds_rc"
[[ $sds_rc -eq 0 ]] || { echo "$sds" | head -c 3000; echo; head -c 2000 sds.err; }
n=$(json_field "$sds" '.streams.default.serials | length')
expect_true "SDS default: at least 4 distinct certificates (saw $n)" test "${n:-0}" -ge 4
expect_eq "SDS default: no NACK" "0" "$(json_field "$sds" '.streams.default.nacks')"
expect_true "SDS ROOTCA: received" test "$(json_field "$sds" '.streams.ROOTCA.responses')" -ge 1

wl=$(cat wl.json)
expect_eq "Workload API harness: no violation in 30 s (exit 0)" "0" "$wl_rc"
[[ $wl_rc -eq 0 ]] || { echo "$wl" | head -c 3000; echo; head -c 2000 wl.err; }
n=$(json_field "$wl" '.serials | length')
expect_true "Workload API: at least 4 distinct certificates (saw $n)" test "${n:-0}" -ge 4
expect_true "Workload API: first response at once" \
  test "$(json_field "$wl" '.first_response_ms')" -lt 1000

expect_true "file sink: at least 4 distinct certificates (saw ${#sink_serials[@]})" \
  test ${#sink_serials[@]} -ge 4
expect_eq "file sink: combined key and leaf always matched" "0" "$sink_bad"
hooks=$(sort -u hooks.log | wc -l)
expect_true "reload hook ran after each write (distinct serials logged: $hooks)" test "$hooks" -ge 4
check "file sink chain verifies against its bundle file" \
  openssl verify -x509_strict -CAfile sink/root-cert.pem -untrusted sink/cert-chain.pem \
  sink/cert-chain.pem
expect_eq "file sink key is 0600" "600" "$(stat -c %a sink/key.pem)"
check "bundle sink holds the root" cmp bundle/root-cert.pem "$ROOT"
check_output_contains "file sink leaf is the delegated identity" "URI:$FILES" \
  openssl x509 -noout -ext subjectAltName -in sink/cert-chain.pem

# Observability: /metrics, /certs, `meshid agent status`.
agent_get /metrics >metrics.txt
STDIN=metrics.txt check "agent /metrics passes promtool check metrics" promtool check metrics
r=$(metric_value "meshid_agent_rotations_total{spiffe_id=\"$WEB\"}")
expect_true "rotations counted ($r)" test "${r%.*}" -ge 6
expect_true "expiry timestamp exported" \
  grep -q "^meshid_agent_certificate_expiration_timestamp_seconds{spiffe_id=\"$WEB\"}" metrics.txt
expect_true "Istio's agent expiry name exported" \
  grep -q "^istio_agent_cert_expiry_seconds{resource_name=\"$WEB\"}" metrics.txt
expect_eq "open streams back to 0 after the harnesses left" "0" \
  "$(metric_value 'meshid_agent_open_streams{api="sds"}')"
expect_true "CA request latency histogram" \
  grep -q '^meshid_agent_ca_request_duration_seconds_count{result="ok"}' metrics.txt
expect_eq "no rotation failures" "0" \
  "$(metric_value "meshid_agent_rotation_failures_total{spiffe_id=\"$WEB\"}")"

certs=$(agent_get /certs)
expect_eq "/certs lists both served identities" "2" "$(json_field "$certs" '.certificates | length')"
expect_eq "/certs days_until_expiration is a string (Envoy's uint64)" "string" \
  "$(json_field "$certs" '.certificates[0].cert_chain[0].days_until_expiration | type')"
expect_contains "/certs SANs in Envoy's shape" \
  "$(json_field "$certs" '[.certificates[].cert_chain[0].subject_alt_names[0].uri] | join(",")')" "$WEB"
expect_eq "/certs ca_cert is the root" \
  "$(openssl x509 -noout -serial -in $ROOT | cut -d= -f2 | tr A-F a-f)" \
  "$(json_field "$certs" '.certificates[0].ca_cert[0].serial_number')"

check_output_contains "agent status table" "$WEB" "$MESHID" agent status --admin-socket sock/admin.sock
check_output_contains "agent status shows the agent's own SVID" "(agent)" \
  "$MESHID" agent status --config agent.yaml
run "$MESHID" agent status --admin-socket sock/admin.sock --json
expect_eq "agent status --json: three identities" "3" "$(json_field "$OUT" '.identities | length')"
expect_eq "agent status --json: bundle version" "1" "$(json_field "$OUT" '.bundle.version')"
r=$(json_field "$OUT" ".identities[] | select(.spiffe_id == \"$AGENT_ID\") | .rotations")
expect_true "the agent's own SVID renewed over mTLS with itself ($r times)" test "${r:-0}" -ge 5
expect_eq "...with one join token: the CA recorded one join-token issuance" "1" \
  "$(grep -c 'caller_method=join_token' ca.log)"

# No key or token in the logs.
expect_lacks "agent log has no private key" "$(cat agent.log)" "PRIVATE KEY"
expect_lacks "agent log has no join token" "$(cat agent.log)" "$(cat join.token)"

stop_server "$AGENT_PID"
check_output_contains "agent stops on SIGTERM" "stopped" cat agent.log
expect_true "agent removed its sockets" test ! -e sock/sds.sock
finish
