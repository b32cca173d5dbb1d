# Helpers shared by the agent's integration scripts. Source after lib.sh.
# The CA and the agent are the real binaries; the clients are the independent
# node harnesses in tests/interop (written from PROTOCOLS.md, TESTING.md §1).
INTEROP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../interop" && pwd)
SDS="$INTEROP/envoy_sds.js"
WL="$INTEROP/workload_api.js"
JWT="$INTEROP/jwt_tool.js"
TD=example.org
AGENT_ID=spiffe://$TD/meshid/agent/node1

if [[ ! -d "$INTEROP/node_modules/@grpc/grpc-js" ]]; then
  echo "FAIL: $INTEROP/node_modules is missing: run 'npm ci' in tests/interop"
  exit 1
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_ca_config PORT [EXTRA_YAML]: ca.yaml for a self-signed CA that lets the
# agent $AGENT_ID act for ns/web/, ns/files/ and ns/client/ workloads.
write_ca_config() {
  cat >ca.yaml <<YAML
trust_domain: $TD
listen: 127.0.0.1:$1
admin_listen: 127.0.0.1:0
state_dir: ca-state
issuance: {default_ttl: 1h, max_ttl: 24h}
delegation:
  - agent: $AGENT_ID
    may_request: [spiffe://$TD/ns/web/, spiffe://$TD/ns/files/, spiffe://$TD/ns/client/]
${2:-}
YAML
}
ROOT=ca-state/ca/root-cert.pem

# write_agent_config TTL ENTRIES: a join token for $AGENT_ID from the
# running CA, and agent.yaml with its sockets under sock/, certificates of
# lifetime TTL, short backoffs and these entries (YAML list lines).
write_agent_config() {
  "$MESHID" token create --config ca.yaml --spiffe-id "$AGENT_ID" >join.token 2>/dev/null
  mkdir -p sock
  cat >agent.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$GRPC], root_file: $ROOT}
credentials: {join_token_file: join.token, agent_id: $AGENT_ID}
state_dir: agent-state
admin_listen: 127.0.0.1:0
sockets: {sds: sock/sds.sock, workload_api: sock/workload.sock, admin: sock/admin.sock}
rotation: {ttl: $1, agent_ttl: 1h, initial_backoff: 200ms, max_backoff: 1s}
entries:
$2
YAML
}

# start_agent LOG CONFIG: sets AGENT_PID and AGENT_ADMIN (the admin HTTP port).
start_agent() {
  local log=$1 config=$2 i line re='admin=127\.0\.0\.1:([0-9]+)'
  start_server "$log" "$MESHID" agent --config "$config"
  AGENT_PID=$LAST_SERVER_PID
  for ((i = 0; i < 200; i++)); do
    line=$(grep -F "meshid agent running" "$log" 2>/dev/null | head -n 1)
    if [[ $line =~ $re ]]; then
      AGENT_ADMIN=${BASH_REMATCH[1]}
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "the agent never printed its running line; its log:"
  sed 's/^/  agent| /' "$log"
  return 1
}

agent_get() {  # agent_get PATH: GET from the agent's admin HTTP port
  curl -s --max-time 5 "http://127.0.0.1:$AGENT_ADMIN$1"
}

# wait_ready SECONDS: until /readyz says every identity holds a certificate.
wait_ready() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' \
      "http://127.0.0.1:$AGENT_ADMIN/readyz") == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

# metric_value NAME_WITH_LABELS: the value of one sample on the agent's /metrics.
metric_value() {
  agent_get /metrics | awk -v m="$1" 'index($0, m " ") == 1 { print $2; found = 1 }
                                      END { if (!found) print "absent" }'
}

# json_field JSON JQ_FILTER
json_field() { jq -r "$2" <<<"$1" 2>/dev/null; }
