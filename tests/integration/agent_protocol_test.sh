#!/usr/bin/env bash
# The agent's sockets against clients that are not ours (TESTING.md §1, §3):
# each SDS rule of PROTOCOLS.md §2 with the Envoy stand-in's scenarios, each
# Workload API rule of §3 with the go-spiffe stand-in, attestation (a caller
# whose uid matches no entry, run as nobody with setpriv), the admin socket's
# owner-only mode, and hostile bytes on every socket. Certificates here live
# an hour so nothing rotates under a scenario.
#   bash tests/integration/agent_protocol_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
chmod 755 "$TMP"  # nobody must reach the sockets (their own mode is the control)
SERVER_LIFETIME=80
WEB=spiffe://$TD/ns/web/sa/web
API=spiffe://$TD/ns/web/sa/api
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

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
rotation: {ttl: 1h}
entries:
  - spiffe_id: $WEB
    selectors: {uid: $(id -u)}
  - spiffe_id: $API
    selectors: {uid: $(id -u), path: $(readlink -f "$(command -v node)")}
  - spiffe_id: spiffe://$TD/ns/web/sa/other-user
    selectors: {uid: 4242}
YAML
start_agent agent.log agent.yaml || finish
expect_true "agent holds every identity within 10 s" wait_ready 10

sds() {  # sds SCENARIO NAMES [extra args]: runs the Envoy stand-in, output in $OUT
  local scenario=$1 names=$2
  shift 2
  run node "$SDS" --socket sock/sds.sock --names "$names" --duration-ms 2500 \
    --scenario "$scenario" "$@"
}
sds_ok() {  # sds_ok NAME SCENARIO NAMES: the scenario passed with no violation
  local name=$1
  shift
  sds "$@"
  if [[ $RC -eq 0 && $(json_field "$OUT" .ok) == true ]]; then
    pass
  else
    fail "$name" "harness exit $RC: $(head -c 1500 <<<"$OUT") $(head -c 500 <<<"$ERR")"
  fi
}
CMD_TIMEOUT=10

# --- SDS (PROTOCOLS.md §2) ---
sds_ok "SDS: default and ROOTCA, one stream each, checked as Envoy does" watch default,ROOTCA
expect_eq "SDS: the default resource is the caller's first entry" "1" \
  "$(json_field "$OUT" '.streams.default.serials | length')"
sds_ok "SDS: an ACK gets no reply" ack-no-reply default
sds_ok "SDS: a stale nonce gets no reply" stale-nonce default
sds_ok "SDS: a NACK is not answered with the same content" nack default
sds_ok "SDS: one stream asking for two names gets both in one response" multi default,ROOTCA
sds_ok "SDS: a reconnect with version and empty nonce gets the state at once" reconnect default
sds_ok "SDS: an identity by its SPIFFE ID as resource name" watch "$WEB"
sds_ok "SDS: a second identity selected by uid and executable path" watch "$API"
sds hold "spiffe://$TD/ns/web/sa/other-user" --expect none
expect_eq "SDS: another user's identity is refused (PERMISSION_DENIED)" "7" \
  "$(json_field "$OUT" '.streams["spiffe://example.org/ns/web/sa/other-user"].end_code')"
sds hold "spiffe://$TD/ns/nowhere/sa/x" --expect none
expect_eq "SDS: an unknown resource name is refused" "7" \
  "$(json_field "$OUT" '.streams["spiffe://example.org/ns/nowhere/sa/x"].end_code')"
nacks=$(metric_value meshid_agent_sds_nacks_total)
expect_true "SDS: the NACK was counted ($nacks)" test "${nacks%.*}" -ge 1
expect_contains "SDS: the NACK's error_detail was logged" "$(cat agent.log)" "rejected version"

# --- Workload API (PROTOCOLS.md §3) ---
run node "$WL" --socket sock/workload.sock --duration-ms 1500 --expect-id "$WEB" --trust-domain $TD
expect_eq "Workload API: both streams, every go-spiffe check (exit 0)" "0" "$RC"
[[ $RC -eq 0 ]] || echo "$OUT" | head -c 2000
expect_eq "Workload API: both identities of this caller in each message" "$WEB,$API" \
  "$(json_field "$OUT" '.ids | join(",")')"
run node "$WL" --socket sock/workload.sock --duration-ms 1500 --scenario no-header
expect_eq "Workload API: no security header -> INVALID_ARGUMENT" "0" "$RC"
run node "$WL" --socket sock/workload.sock --duration-ms 1500 --scenario jwt
expect_eq "Workload API: JWT-SVID calls -> UNIMPLEMENTED" "0" "$RC"

# --- attestation: a caller whose uid matches no entry ---
run "${NOBODY[@]}" node "$WL" --socket sock/workload.sock --duration-ms 1500 \
  --scenario expect-error --expect-code PERMISSION_DENIED
expect_eq "Workload API as nobody (uid 65534) -> PERMISSION_DENIED" "0" "$RC"
[[ $RC -eq 0 ]] || echo "$OUT $ERR" | head -c 1500
run "${NOBODY[@]}" node "$SDS" --socket sock/sds.sock --names default --duration-ms 1500 \
  --scenario hold --expect none
expect_eq "SDS as nobody: nothing served" "0" "$RC"
expect_eq "SDS as nobody: PERMISSION_DENIED" "7" "$(json_field "$OUT" '.streams.default.end_code')"
denied=$(metric_value 'meshid_agent_attestation_denials_total{api="workload_api"}')
expect_true "denials counted ($denied)" test "${denied%.*}" -ge 1
run "${NOBODY[@]}" "$MESHID" agent status --admin-socket sock/admin.sock
expect_true "admin socket refuses another user (exit $RC)" test "$RC" -ne 0
check "admin socket serves its owner" "$MESHID" agent status --admin-socket sock/admin.sock

# --- hostile bytes on every socket: refused, and the agent still serves ---
for s in sds workload admin; do
  python3 - "sock/$s.sock" <<'PY'
import os, socket, sys
for payload in (os.urandom(65536), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\xff\xff\x04" * 9000,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(sys.argv[1])
    try:
        s.sendall(payload)
        s.recv(4096)
    except OSError:
        pass
    s.close()
# many connections opened and dropped at once
socks = []
for _ in range(200):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    socks.append(s)
for s in socks:
    s.close()
PY
done
check "agent still alive after hostile bytes" kill -0 "$AGENT_PID"
sds_ok "SDS still serves after hostile bytes" watch default
run node "$WL" --socket sock/workload.sock --duration-ms 1500 --expect-id "$WEB"
expect_eq "Workload API still serves after hostile bytes" "0" "$RC"
expect_eq "no stream left open" "0" "$(metric_value 'meshid_agent_open_streams{api="sds"}')"

stop_server "$AGENT_PID"
check_output_contains "agent stops on SIGTERM" "stopped" cat agent.log
finish
