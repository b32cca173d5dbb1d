#!/usr/bin/env bash
# A trust bundle change reaches every consumer at once, without a restart
# (issue 4): the CA signs with plugged-in Istio cacerts files; the operator
# swaps in a new intermediate under a new root, with root-cert.pem holding the
# new root and the old one (the first step of a root rotation). The CA pushes
# bundle version 2 over WatchTrustBundle; the agent must push it, unasked, to
# the Envoy stand-in's ROOTCA stream, to the go-spiffe stand-in's bundle
# stream and to its bundle file. New leaves then chain to the new root.
#   bash tests/integration/agent_bundle_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=60
WEB=spiffe://$TD/ns/web/sa/web

"$MESHID" ca init --trust-domain $TD --out old-ca >/dev/null
"$MESHID" ca init --trust-domain $TD --out new-ca >/dev/null
mkdir cacerts
cp old-ca/{ca-cert.pem,ca-key.pem,cert-chain.pem,root-cert.pem} cacerts/
write_ca_config 0 "signer: {type: files, dir: cacerts, poll_interval: 1s}"
start_ca ca.log || finish
"$MESHID" token create --config ca.yaml --spiffe-id "$AGENT_ID" >join.token 2>/dev/null

cat >agent.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$GRPC], root_file: old-ca/root-cert.pem}
credentials: {join_token_file: join.token, agent_id: $AGENT_ID}
state_dir: agent-state
sockets: {sds: sock/sds.sock, workload_api: sock/workload.sock}
admin_listen: 127.0.0.1:0
rotation: {ttl: 4s, agent_ttl: 1h, initial_backoff: 200ms, max_backoff: 1s}
entries:
  - spiffe_id: $WEB
    selectors: {uid: $(id -u)}
bundle_sinks:
  - path: bundle/root-cert.pem
YAML
start_agent agent.log agent.yaml || finish
expect_true "agent ready" wait_ready 10
expect_eq "bundle version 1 to start with" "1" "$(metric_value meshid_agent_trust_bundle_version)"

node "$SDS" --socket sock/sds.sock --names default,ROOTCA --duration-ms 9000 \
  --events sds-events.jsonl >sds.json 2>&1 &
sds_pid=$!
node "$WL" --socket sock/workload.sock --duration-ms 9000 --expect-id "$WEB" \
  --trust-domain $TD >wl.json 2>&1 &
wl_pid=$!
sleep 2

# The swap: new intermediate and key, root-cert.pem = new root + old root.
# Each file is replaced by rename; the key goes last so the set is never
# half new (the CA refuses a mismatched set and keeps the old one anyway).
cat new-ca/root-cert.pem old-ca/root-cert.pem >cacerts/.root.tmp
cp new-ca/cert-chain.pem cacerts/.chain.tmp
cp new-ca/ca-cert.pem cacerts/.cert.tmp
cp new-ca/ca-key.pem cacerts/.key.tmp
swapped_ms=$(date +%s%3N)
mv cacerts/.root.tmp cacerts/root-cert.pem
mv cacerts/.chain.tmp cacerts/cert-chain.pem
mv cacerts/.cert.tmp cacerts/ca-cert.pem
mv cacerts/.key.tmp cacerts/ca-key.pem

for ((i = 0; i < 50; i++)); do
  [[ $(metric_value meshid_agent_trust_bundle_version) == 2 ]] && break
  sleep 0.1
done
expect_eq "the agent took bundle version 2 from the CA's watch" "2" \
  "$(metric_value meshid_agent_trust_bundle_version)"
expect_eq "the bundle file holds both roots" "2" "$(grep -c 'BEGIN CERTIFICATE' bundle/root-cert.pem)"
wait $sds_pid
sds_rc=$?
wait $wl_pid
wl_rc=$?

expect_eq "SDS harness: no violation across the bundle change" "0" "$sds_rc"
[[ $sds_rc -eq 0 ]] || head -c 2000 sds.json
expect_eq "SDS ROOTCA: the first bundle and the pushed one" "2" \
  "$(json_field "$(cat sds.json)" '.streams.ROOTCA.responses')"
rootca_ms=$(jq -s "[.[] | select(.name == \"ROOTCA\" and .unix_ms > $swapped_ms)][0].unix_ms" sds-events.jsonl)
expect_true "SDS ROOTCA pushed within 3 s of the swap ($((rootca_ms - swapped_ms)) ms; the CA polls every 1 s)" \
  test "$((rootca_ms - swapped_ms))" -lt 3000
expect_eq "Workload API harness: no violation across the bundle change" "0" "$wl_rc"
[[ $wl_rc -eq 0 ]] || head -c 2000 wl.json
expect_true "Workload API bundle stream got the change" \
  test "$(json_field "$(cat wl.json)" '.bundle_responses')" -ge 2

# New leaves come from the new intermediate and chain to the new root.
run node "$WL" --socket sock/workload.sock --duration-ms 500 --expect-id "$WEB"
expect_eq "a fetch after the change still passes every check" "0" "$RC"
agent_get /certs >certs.json
expect_eq "/certs lists both roots" "2" "$(jq '.certificates[0].ca_cert | length' certs.json)"
new_root_serial=$(openssl x509 -noout -serial -in new-ca/root-cert.pem | cut -d= -f2 | tr A-F a-f)
expect_eq "/certs: the new root is first" "$new_root_serial" \
  "$(jq -r '.certificates[0].ca_cert[0].serial_number' certs.json)"
expect_lacks "no restart: one 'meshid agent running' line" \
  "$(grep -c 'meshid agent running' agent.log)" "2"
finish
