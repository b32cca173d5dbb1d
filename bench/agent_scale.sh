#!/usr/bin/env bash
# Agent scale benchmark (issue 4): one agent holding N identities (default
# 1,000) that each rotate every PERIOD seconds (lifetime 2 × PERIOD, grace
# ratio 0.5, as Istio's agent), against a local meshid CA. Measures the
# agent's CPU (utime + stime from /proc over a steady-state window that covers
# at least one full rotation round) and its resident memory (VmRSS at the end,
# VmHWM peak). The agent is pinned to core 1, the CA to core 0.
# Usage: bench/agent_scale.sh [BUILD_DIR] [IDENTITIES] [PERIOD_S] [WINDOW_S]
# Target: under 50 MB and under 5% of one core.
set -euo pipefail
BUILD=$(realpath "${1:-build}")
N=${2:-1000}
PERIOD=${3:-60}
WINDOW=${4:-$((PERIOD * 2))}
W=$(mktemp -d /tmp/meshid-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
M="$BUILD/meshid"
TD=example.org
AGENT=spiffe://$TD/meshid/agent/bench

cat >ca.yaml <<YAML
trust_domain: $TD
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: state
issuance: {default_ttl: 1h, max_ttl: 24h}
delegation: [{agent: $AGENT, may_request: [spiffe://$TD/ns/bench/]}]
YAML
taskset -c 0 "$M" ca serve --config ca.yaml >ca.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ' grpc=' ca.log 2>/dev/null && break; sleep 0.1; done
port=$(grep -oE ' grpc=[0-9.]+:[0-9]+' ca.log | head -1 | sed 's/.*://')
[[ -n $port ]] || { echo "meshid CA did not start" >&2; cat ca.log >&2; exit 1; }
"$M" token create --config ca.yaml --spiffe-id "$AGENT" >join.token 2>/dev/null

{
  cat <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$port], root_file: state/ca/root-cert.pem}
credentials: {join_token_file: join.token, agent_id: $AGENT}
state_dir: agent-state
sockets: {sds: sds.sock, workload_api: workload.sock}
admin_listen: 127.0.0.1:0
rotation: {ttl: $((PERIOD * 2))s}
entries:
YAML
  for ((i = 0; i < N; i++)); do
    echo "  - {spiffe_id: spiffe://$TD/ns/bench/sa/w$i, selectors: {uid: $((10000 + i))}}"
  done
} >agent.yaml
# Info level, as in production: one log line per rotation.
taskset -c 1 "$M" agent --config agent.yaml >agent.log 2>&1 &
apid=$!
pids+=($apid)

ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$apid/stat"; }
status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$apid/status"; }
admin_port() { { grep -oE 'admin=127\.0\.0\.1:[0-9]+' agent.log || true; } | head -1 | sed 's/.*://'; }

# Wait for the initial issuance of all N (and note how long it took).
start=$(date +%s.%N)
for _ in $(seq 600); do
  ap=$(admin_port)
  [[ -n $ap ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ap/readyz") == 200 ]] && break
  sleep 0.1
done
ready=$(date +%s.%N)
initial_cpu=$(cpu)
echo "agent: $N identities issued in $(awk -v a="$start" -v b="$ready" 'BEGIN{printf "%.1f", b-a}') s" \
  "(CPU so far $(awk -v t="$initial_cpu" -v k="$ticks" 'BEGIN{printf "%.2f", t/k}') s)"

# Steady state: renewals are spread by when each identity was issued; the
# window covers at least one full round.
c0=$(cpu)
t0=$(date +%s.%N)
sleep "$WINDOW"
c1=$(cpu)
t1=$(date +%s.%N)
rss=$(status VmRSS)
hwm=$(status VmHWM)
rotations=$(curl -s "http://127.0.0.1:$(admin_port)/metrics" |
  awk '/^meshid_agent_rotations_total/ { s += $2 } END { print s }')
failures=$(curl -s "http://127.0.0.1:$(admin_port)/metrics" |
  awk '/^meshid_agent_rotation_failures_total/ { s += $2 } END { print s + 0 }')
cpu_pct=$(awk -v a="$c0" -v b="$c1" -v k="$ticks" -v x="$t0" -v y="$t1" \
  'BEGIN { printf "%.2f", 100 * (b - a) / k / (y - x) }')
expected=$(awk -v n="$N" -v p="$PERIOD" -v w="$WINDOW" 'BEGIN { printf "%.0f", n * w / p }')
echo "window ${WINDOW} s: agent CPU ${cpu_pct}% of one core, RSS $((rss / 1024)) MB (peak $((hwm / 1024)) MB)"
echo "rotations in total: $rotations (about $expected expected in the window plus $N initial), failures: $failures"
echo "| identities | rotation period | agent CPU (% of one core) | RSS | peak RSS | failures |"
echo "|---|---|---|---|---|---|"
echo "| $N | ${PERIOD} s | ${cpu_pct}% | $((rss / 1024)) MB | $((hwm / 1024)) MB | $failures |"
