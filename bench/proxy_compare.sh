#!/usr/bin/env bash
# Issue 5's proxy benchmark: meshid proxy, haproxy, nginx (stream module) and
# stunnel side by side in one run, plus the direct connection (no proxy) as the
# baseline. Same certificates for all (ECDSA P-256, root + intermediate + leaf
# from `meshid ca init` / `cert issue`), each system terminating mTLS (client
# certificate required and verified) in front of the same plaintext backend.
# Each system runs one worker pinned to core 0; the load generator and the
# backend (both bench/meshid_tls_load) run on core 1. CPU is the system's
# utime + stime (all threads, and child processes such as nginx's worker)
# over the measured window only, read by the load generator from /proc.
#
# Rows: full and resumed mTLS handshakes/s, keep-alive requests/s with p50/p99
# latency, bulk MB/s through one connection, RSS for 1,000 idle connections;
# each per CPU-second where it applies, then meshid's ratio to each other
# system. Every counted handshake is a completed, verified one on the server:
# the client counts it only after an echo came back from the backend through
# the proxy, and the backend's own count of accepted connections is checked
# against it. `openssl s_time` runs as a cross-check with the same
# accounting, because with TLS 1.3 it closes right after sending its Finished
# and so counts handshakes a server may have abandoned (docs/PERFORMANCE.md).
# A row a system cannot complete prints `failed: <reason>`, never a number.
#
# Usage: bench/proxy_compare.sh [BUILD_DIR] [SECONDS]
# Environment: SYSTEMS (default "direct meshid haproxy nginx stunnel"),
#   ROWS (default "idle hs hs12 resume rr rr1 sys bulk stime"; sys needs perf), HS_CONNS (4),
#   RR_CONNS (32), IDLE_CONNS (1000), BULK_MB (1024), ROUNDS (1): the whole
#   set again; each cell then shows the round with the median value and
#   [min–max] over the rounds, and a last table pairs meshid with each other
#   system round by round, with the one-sided sign test's p for its count of
#   rounds won (the s_time cross-check runs in round 1 only).
#   Within a round each row runs on all systems back to back, each freshly
#   started, in an order that rotates from round to round: this VM's speed
#   drifts over minutes, so two systems' numbers in a row are seconds apart.
#   Single rounds can still be far apart; use 3 or more for published numbers.
#   INTERLEAVE (1): the rows the load's core bounds (rr, rr1, bulk) run all
#   systems at once and take turns within one load run instead: SLICE (0.5)
#   seconds each for rr and rr1, SLICE_MB (64) MiB each for bulk, until each
#   has had SECONDS or BULK_MB; INTERLEAVE=0 runs them back to back too.
# Final numbers: hold the build lock for the whole run,
#   flock /tmp/meshid-build.lock bash bench/proxy_compare.sh build
set -euo pipefail
HERE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")  # before any cd
BUILD=$(realpath "${1:-build}")
SECS=${2:-8}
SYSTEMS=${SYSTEMS:-direct meshid haproxy nginx stunnel}
ROWS=${ROWS:-idle hs hs12 resume rr rr1 sys bulk stime}
HS_CONNS=${HS_CONNS:-4}
ROUNDS=${ROUNDS:-1}
RR_CONNS=${RR_CONNS:-32}
IDLE_CONNS=${IDLE_CONNS:-1000}
BULK_MB=${BULK_MB:-1024}
INTERLEAVE=${INTERLEAVE:-1}
SLICE=${SLICE:-0.5}
SLICE_MB=${SLICE_MB:-64}
M="$BUILD/meshid"
LOAD="$BUILD/bench/meshid_tls_load"
[[ -x $M && -x $LOAD ]] || { echo "need $M and $LOAD (ninja -C $BUILD meshid_tls_load)" >&2; exit 1; }
# 1,000 idle connections are 2,000 sockets in a proxy.
ulimit -n "$(ulimit -Hn)"
source "$HERE/proxy_lib.sh"
enter_workdir meshid-bench

# --- certificates -----------------------------------------------------------
make_mesh_certs "$M"
# A client from another mesh: every system must refuse it.
"$M" ca init --trust-domain example.org --out foreign-ca >/dev/null
"$M" cert issue --ca foreign-ca --spiffe-id spiffe://example.org/ns/shop/sa/client --out foreign >/dev/null
# trust.pem: the client may present its leaf alone (s_time) or its chain
# (meshid_tls_load, like a mesh workload).
cat server/cert-chain.pem server/key.pem >server/combined.pem
TLS=(--cert client/cert-chain.pem --key client/key.pem --ca trust.pem)

# --- the backend ------------------------------------------------------------
BACKEND=$(free_port)
taskset -c 1 "$LOAD" serve --listen "127.0.0.1:$BACKEND" >backend.log 2>&1 &
BACKEND_PID=$!
pids+=("$BACKEND_PID")
wait_port "$BACKEND"
backend_accepted() {  # connections the backend has accepted so far
  local before
  before=$(wc -l <backend.log)
  kill -USR1 "$BACKEND_PID"
  for _ in $(seq 50); do
    (($(wc -l <backend.log) > before)) && break
    sleep 0.02
  done
  tail -1 backend.log | sed -n 's/^accepted=\([0-9]*\).*/\1/p'
}

# --- the systems ------------------------------------------------------------
declare -A port
ADMIN=$(free_port)
write_configs() {
  for s in meshid haproxy nginx stunnel; do port[$s]=$(free_port); done
  port[direct]=$BACKEND
  cat >proxy.yaml <<YAML
trust_domain: example.org
certificates: {cert_file: server/cert-chain.pem, key_file: server/key.pem, bundle_file: trust.pem}
admin_listen: 127.0.0.1:$ADMIN
workers: 1
inbound: [{name: in, listen: 127.0.0.1:${port[meshid]}, forward: 127.0.0.1:$BACKEND}]
YAML
  cat >haproxy.cfg <<CFG
global
  nbthread 1
  maxconn 5000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend f
  bind 127.0.0.1:${port[haproxy]} ssl crt $W/server/combined.pem ca-file $W/trust.pem verify required
  default_backend b
backend b
  server s 127.0.0.1:$BACKEND
CFG
  write_nginx_conf "$W" "${port[nginx]}" "$BACKEND"
  # debug = warning: stunnel's default (notice) logs every connection, which
  # none of the others is set up to do.
  cat >stunnel.conf <<CONF
foreground = yes
pid =
debug = warning
[tls]
accept = 127.0.0.1:${port[stunnel]}
connect = 127.0.0.1:$BACKEND
cert = $W/server/cert-chain.pem
key = $W/server/key.pem
CAfile = $W/trust.pem
verifyChain = yes
sslVersionMin = TLSv1.2
CONF
}

SYS_PID=
start_system() {  # NAME: one worker pinned to core 0
  case $1 in
    meshid) taskset -c 0 "$M" proxy --config proxy.yaml --log-level warn >meshid.log 2>&1 & ;;
    haproxy) taskset -c 0 haproxy -f haproxy.cfg -db >haproxy.log 2>&1 & ;;
    nginx) taskset -c 0 nginx -e "$W/nginx-error.log" -c "$W/nginx.conf" >nginx.log 2>&1 & ;;
    stunnel) taskset -c 0 stunnel4 stunnel.conf >stunnel.log 2>&1 & ;;
  esac
  SYS_PID=$!
  pids+=("$SYS_PID")
  wait_port "${port[$1]}"
}
stop_system() {
  kill -TERM "$SYS_PID" 2>/dev/null || true
  wait "$SYS_PID" 2>/dev/null || true
}
sys_pids() { echo "$SYS_PID" $(pgrep -P "$SYS_PID" || true) | tr ' ' ','; }
# sum_proc FILE AWK: what AWK prints for /proc/PID/FILE, summed over the system's processes.
sum_proc() {
  local total=0 p
  for p in $(tr ',' ' ' <<<"$(sys_pids)"); do
    total=$((total + $(awk "$2" "/proc/$p/$1")))
  done
  echo "$total"
}
sys_rss_kb() { sum_proc status '/^VmRSS/ { print $2 }'; }
meshid_handshakes() { curl -sf "127.0.0.1:$ADMIN/stats" | python3 -c \
  'import json,sys; print(int(sum(l["handshakes"] for l in json.load(sys.stdin)["listeners"].values())))' 2>/dev/null || echo "?"; }

# Does SYSTEM verify client certificates? An echo through it with our client
# certificate, none without one or with a foreign one.
echo_through() {  # PORT [s_client certificate options]
  local p=$1
  shift
  (printf 'Eping'; sleep 1) | timeout 5 openssl s_client -connect "127.0.0.1:$p" -CAfile trust.pem \
    -quiet -no_ign_eof "$@" 2>/dev/null | head -c 5 || true
}
check_verifies() {  # PORT -> reason on failure
  local p=$1
  [[ $(echo_through "$p" -cert client/cert-chain.pem -key client/key.pem) == Eping ]] ||
    { echo "no echo with a valid client certificate"; return; }
  [[ -z $(echo_through "$p") ]] || { echo "accepted a client without a certificate"; return; }
  [[ -z $(echo_through "$p" -cert foreign/cert-chain.pem -key foreign/key.pem) ]] ||
    echo "accepted a client certificate from a foreign CA"
}
# Starts SYS for ROW; one that does not start is marked broken and the row
# failed (false).
started_for() {  # ROW SYS
  start_system "$2" && return 0
  BROKEN[$2]="did not start: $(tail -1 "$2.log")"
  fail_keys "$1" "$2" "${BROKEN[$2]}"
  return 1
}
# Once per round, before a system's first row: a system that does not verify
# client certificates is marked broken and its row failed (false).
verified_once() {  # ROW SYS
  local reason
  [[ -n ${CHECKED[$2]:-} ]] && return 0
  CHECKED[$2]=1
  reason=$(check_verifies "${port[$2]}")
  [[ -z $reason ]] && return 0
  BROKEN[$2]=$reason
  fail_keys "$1" "$2" "$reason"
  return 1
}

# --- results ----------------------------------------------------------------
# Per round: V[row|sys|round] is what the table prints, N[row|sys|round] the
# number behind it (for the median, the range and the ratios).
declare -A V N KEYS
ROUND=1
raw() { echo "r$ROUND $*" >>raw.log; }  # the evidence behind the tables, printed at the end
: >raw.log
put() { V[$1|$2|$ROUND]=$3; N[$1|$2|$ROUND]=${4:-}; KEYS[$1|$2]=1; }
fail_row() { V[$1|$2|$ROUND]="failed: $3"; KEYS[$1|$2]=1; }
load() {  # SYS MODE ARGS...: runs the load generator on core 1, keeps its line
  local sys=$1
  shift
  local out
  out=$(taskset -c 1 "$LOAD" "$@" 2>&1 | tail -1) || true
  raw "$sys: $out"
  echo "$out"
}
# A line's error count, or an empty string when there are too many errors to
# report a number (more than 1 % of the completions).
errors_ok() {  # LINE COMPLETIONS
  local e
  e=$(kv errors "$1")
  [[ -n $e ]] && (( $2 > 0 && e * 100 <= $2 ))
}

row_idle() {  # SYS
  local sys=$1 before after out
  [[ $sys == direct ]] && { put idle "$sys" "—"; return; }
  before=$(sys_rss_kb)
  taskset -c 1 "$LOAD" idle --connect "127.0.0.1:${port[$sys]}" "${TLS[@]}" --conns "$IDLE_CONNS" \
    --seconds 600 >idle.out 2>&1 &
  local idle_pid=$!
  for _ in $(seq 1200); do
    grep -q '^ready' idle.out 2>/dev/null && break
    kill -0 "$idle_pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q '^ready' idle.out; then
    sleep 1  # let the last connections settle
    after=$(sys_rss_kb)
    put idle "$sys" "$((after - before)) kB ($(calc %.1f "($after - $before) / $IDLE_CONNS") kB/conn)" \
      "$((after - before))"
    raw "$sys: idle rss_before_kb=$before rss_after_kb=$after conns=$IDLE_CONNS"
  else
    fail_row idle "$sys" "$(tail -1 idle.out)"
  fi
  kill "$idle_pid" 2>/dev/null || true
  wait "$idle_pid" 2>/dev/null || true
}

row_hs() {  # SYS ROW [--resume]: new connections, each counted after an echo
  local sys=$1 row=$2
  shift 2
  if [[ $sys == direct ]]; then
    [[ $row != hs ]] && { put "$row" "$sys" "—"; put "$row-cpu" "$sys" "—"; return; }
    local out n
    out=$(load "$sys" hs --connect "127.0.0.1:$BACKEND" --conns "$HS_CONNS" --seconds "$SECS")
    put "$row" "$sys" "$(kv per_s "$out" | cut -d. -f1) TCP conn/s (no TLS)"
    put "$row-cpu" "$sys" "—"
    return
  fi
  local a0 a1 m0 m1 out n per cpu resumed
  a0=$(backend_accepted)
  [[ $sys == meshid ]] && m0=$(meshid_handshakes)
  out=$(load "$sys" hs --connect "127.0.0.1:${port[$sys]}" "${TLS[@]}" --conns "$HS_CONNS" \
    --seconds "$SECS" --pids "$(sys_pids)" "$@")
  a1=$(backend_accepted)
  if [[ $sys == meshid ]]; then
    m1=$(meshid_handshakes)
    raw "$sys: /stats handshakes $m0 -> $m1 during the $row run (window + warm-up)"
  fi
  raw "$sys: backend accepted +$((a1 - a0)) connections during the $row run (window + warm-up)"
  n=$(kv handshakes "$out")
  per=$(kv per_s "$out")
  cpu=$(kv cpu_s "$out")
  resumed=$(kv resumed "$out")
  if [[ -z $n ]] || ! errors_ok "$out" "$n"; then
    fail_row "$row" "$sys" "${out:0:200}"
    fail_row "$row-cpu" "$sys" "see above"
    return
  fi
  # The backend must have seen every connection the client counted.
  if ((a1 - a0 < n)); then
    fail_row "$row" "$sys" "client counted $n, backend saw $((a1 - a0))"
    fail_row "$row-cpu" "$sys" "see above"
    return
  fi
  if [[ $row == resume ]] && ((resumed * 100 < n * 90)); then
    fail_row "$row" "$sys" "only $resumed of $n handshakes resumed"
    fail_row "$row-cpu" "$sys" "see above"
    return
  fi
  local note=""
  (($(kv errors "$out") > 0)) && note=" ($(kv errors "$out") errors)"
  put "$row" "$sys" "$(calc %.0f "$per")$note" "$per"
  if [[ $(calc %d "$cpu * 100") -gt 0 ]]; then
    local pc
    pc=$(calc %.0f "$n / $cpu")
    put "$row-cpu" "$sys" "$pc ($(calc %.2f "$cpu * 1000 / $n") ms each)" "$pc"
  else
    fail_row "$row-cpu" "$sys" "no CPU time measured"
  fi
}

row_rr() {  # SYS ROW CONNS
  local sys=$1 row=$2 conns=$3 out target pid_args=()
  target=${port[$sys]}
  [[ $sys != direct ]] && pid_args=(--pids "$(sys_pids)")
  local tls=("${TLS[@]}")
  [[ $sys == direct ]] && tls=()
  out=$(load "$sys" rr --connect "127.0.0.1:$target" "${tls[@]}" --conns "$conns" --seconds "$SECS" \
    "${pid_args[@]}")
  put_rr "$sys" "$row" "$out"
}
put_rr() {  # SYS ROW LINE: the load generator's rr line into the tables
  local sys=$1 row=$2 out=$3 n
  n=$(kv requests "$out")
  if [[ -z $n ]] || ! errors_ok "$out" "$n"; then
    fail_row "$row" "$sys" "${out:0:200}"
    return
  fi
  local per p50 p99 cpu
  per=$(kv per_s "$out")
  p50=$(kv p50_us "$out")
  p99=$(kv p99_us "$out")
  cpu=$(kv cpu_s "$out")
  put "$row" "$sys" "$(calc %.0f "$per")" "$per"
  put "$row-lat" "$sys" "$p50 / $p99" "$p50"
  N[$row-p99|$sys|$ROUND]=$p99
  if [[ $sys == direct ]]; then
    put "$row-cpu" "$sys" "—"
    put "$row-add" "$sys" "—"
  else
    put "$row-cpu" "$sys" "$(calc %.0f "$n / $cpu")" "$(calc %.0f "$n / $cpu")"
  fi
}
# Latency added over direct, once the round has measured direct too (the
# order of the systems rotates, so direct may come after a proxy).
added_latency() {  # ROW
  local row=$1 sys
  for sys in $SYSTEMS; do
    [[ $sys == direct || -z ${N[$row-lat|$sys|$ROUND]:-} ]] && continue
    if [[ -n ${N[$row-lat|direct|$ROUND]:-} ]]; then
      local d50=$((N[$row-lat|$sys|$ROUND] - N[$row-lat|direct|$ROUND]))
      local d99=$((N[$row-p99|$sys|$ROUND] - N[$row-p99|direct|$ROUND]))
      put "$row-add" "$sys" "+$d50 / +$d99" "$d50"
      N[$row-add99|$sys|$ROUND]=$d99
    else
      put "$row-add" "$sys" "no direct baseline"
    fi
  done
}

# System calls per keep-alive request, counted by perf on the proxy's
# processes and threads over a run of its own (the tracepoints slow every
# call a little, so this run is not the one the requests/s row reports).
row_sys() {  # SYS
  local sys=$1 out n perf_pid stats
  if ! command -v perf >/dev/null || ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    fail_row sys "$sys" "perf cannot count system calls here"
    return
  fi
  stats="sys-$sys-r$ROUND.csv"
  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl \
    -p "$(sys_pids)" -o "$stats" &
  perf_pid=$!
  sleep 0.5  # attached before the first request
  out=$(load "$sys" rr --connect "127.0.0.1:${port[$sys]}" "${TLS[@]}" --conns "$RR_CONNS" --seconds "$SECS" \
    --warmup 0)  # every request the count saw is counted
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  n=$(kv requests "$out")
  if [[ -z $n ]] || ! errors_ok "$out" "$n" || ((n == 0)); then
    fail_row sys "$sys" "${out:0:200}"
    return
  fi
  local calls waits ctls
  calls=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$stats")
  waits=$(awk -F, '$3 ~ /sys_enter_epoll_p?wait$/ { s += $1 } END { print s + 0 }' "$stats")
  ctls=$(awk -F, '$3 == "syscalls:sys_enter_epoll_ctl" { print $1 }' "$stats")
  if [[ -z $calls ]]; then
    fail_row sys "$sys" "perf counted nothing: $(head -c 200 "$stats")"
    return
  fi
  raw "$sys: system calls $calls, epoll waits $waits, epoll_ctl $ctls, requests $n"
  put sys "$sys" "$(calc %.2f "$calls / $n") ($(calc %.2f "$waits / $n") epoll_wait, $(calc %.2f "${ctls:-0} / $n") epoll_ctl)" \
    "$(calc %.3f "$calls / $n")"
}

row_bulk() {  # SYS
  local sys=$1 out pid_args=() tls=("${TLS[@]}")
  [[ $sys != direct ]] && pid_args=(--pids "$(sys_pids)")
  [[ $sys == direct ]] && tls=()
  out=$(load "$sys" bulk --connect "127.0.0.1:${port[$sys]}" "${tls[@]}" \
    --bytes $((BULK_MB * 1024 * 1024)) "${pid_args[@]}")
  put_bulk "$sys" "$out"
}
put_bulk() {  # SYS LINE: the load generator's bulk line into the tables
  local sys=$1 out=$2 mbs cpu
  mbs=$(kv mb_per_s "$out")
  [[ -n $mbs ]] || { fail_row bulk "$sys" "${out:0:200}"; return; }
  cpu=$(kv cpu_s "$out")
  put bulk "$sys" "$(calc %.0f "$mbs")" "$mbs"
  if [[ $sys == direct ]]; then
    put bulk-cpu "$sys" "—"
  else
    local per
    per=$(calc %.0f "$BULK_MB * 1.048576 / $cpu")
    put bulk-cpu "$sys" "$per" "$per"
  fi
}

# The rows that the load's core bounds (requests/s at RR_CONNS and one
# connection, bulk) with INTERLEAVE=1: every system up at once and one load
# run in which they take turns, SLICE seconds (rr) or SLICE_MB (bulk) each,
# until each has had SECS seconds or BULK_MB. Back-to-back runs of a few
# seconds each put this VM's drift (±10 % over seconds) between two systems;
# turns of half a second spread it over all of them alike.
interleaved() { [[ $INTERLEAVE == 1 && ($1 == rr || $1 == rr1 || $1 == bulk) ]]; }
run_interleaved() {  # ROW SYSTEMS...
  local row=$1 sys started=() targets=() spid=()
  shift
  for sys in "$@"; do
    if [[ -n ${BROKEN[$sys]:-} ]]; then
      fail_keys "$row" "$sys" "${BROKEN[$sys]}"
    elif [[ $sys == direct ]]; then
      targets+=(--target "direct 127.0.0.1:$BACKEND - plain")
    elif started_for "$row" "$sys"; then
      started+=("$sys")
      spid+=("$SYS_PID")
    fi
  done
  local i
  for i in "${!started[@]}"; do
    sys=${started[$i]}
    SYS_PID=${spid[$i]}
    verified_once "$row" "$sys" || continue
    targets+=(--target "$sys 127.0.0.1:${port[$sys]} $(sys_pids) tls")
  done
  local out=""
  if ((${#targets[@]} > 0)); then
    case $row in
      rr) out=$(taskset -c 1 "$LOAD" rr "${targets[@]}" "${TLS[@]}" --conns "$RR_CONNS" \
        --seconds "$SECS" --slice "$SLICE" 2>&1) || true ;;
      rr1) out=$(taskset -c 1 "$LOAD" rr "${targets[@]}" "${TLS[@]}" --conns 1 \
        --seconds "$SECS" --slice "$SLICE" 2>&1) || true ;;
      bulk) out=$(taskset -c 1 "$LOAD" bulk "${targets[@]}" "${TLS[@]}" \
        --bytes $((BULK_MB * 1024 * 1024)) --slice-bytes $((SLICE_MB * 1024 * 1024)) 2>&1) || true ;;
    esac
  fi
  for i in "${!started[@]}"; do
    SYS_PID=${spid[$i]}
    stop_system
  done
  local line
  for sys in "$@"; do
    [[ -n ${BROKEN[$sys]:-} ]] && continue
    line=$(sed -n "s/^target=$sys //p" <<<"$out" | tail -1)
    [[ -n $line ]] || line="no result: $(tail -1 <<<"$out")"
    raw "$sys: $line"
    if [[ $row == bulk ]]; then
      put_bulk "$sys" "$line"
    else
      put_rr "$sys" "$row" "$line"
    fi
  done
}

# openssl s_time with the same accounting: how many of the connections it
# counted reached the backend, i.e. were completed and verified by the server.
row_stime() {  # SYS ROW s_time-options...
  local sys=$1 row=$2
  shift 2
  [[ $sys == direct ]] && { put "$row" "$sys" "—"; return; }
  local a0 a1 m0 out n real c0 c1 secs
  secs=$(((SECS + 1) / 2))
  a0=$(backend_accepted)
  [[ $sys == meshid ]] && m0=$(meshid_handshakes)
  c0=$(cpu_ticks)
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:${port[$sys]}" -time "$secs" \
    -cert client/cert-chain.pem -key client/key.pem "$@" 2>&1 || true)
  c1=$(cpu_ticks)
  a1=$(backend_accepted)
  [[ $sys == meshid ]] && raw "$sys: /stats handshakes $m0 -> $(meshid_handshakes) during s_time $*"
  n=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' <<<"$out" | tail -1)
  real=$(sed -n 's/^[0-9]* connections in \([0-9.]*\) real seconds.*/\1/p' <<<"$out" | tail -1)
  [[ -n $n && -n $real && $n -gt 0 ]] || { fail_row "$row" "$sys" "$(tail -2 <<<"$out" | tr '\n' ' ')"; return; }
  local cpu
  cpu=$(calc %.2f "($c1 - $c0 + 0.001) / $(getconf CLK_TCK)")
  raw "$sys: s_time $*: $n connections in $real s, system CPU $cpu s, backend accepted +$((a1 - a0))"
  put "$row" "$sys" "$(calc %.0f "$n / $real")/s, $(calc %.0f "$n / $cpu")/CPU-s, $((a1 - a0)) of $n reached the backend"
}
cpu_ticks() { sum_proc stat '{ print $14 + $15 }'; }

# --- the run ----------------------------------------------------------------
write_configs
has_row() { [[ " $ROWS " == *" $1 "* ]]; }
HEADER="proxy_compare: $(date -u +%Y-%m-%dT%H:%MZ), ${SECS}s per cell, ROUNDS=$ROUNDS HS_CONNS=$HS_CONNS"
HEADER+=" RR_CONNS=$RR_CONNS IDLE_CONNS=$IDLE_CONNS BULK_MB=$BULK_MB"
echo "$HEADER" >&2
# Rows are measured one at a time across all systems, back to back, each on
# a freshly started system; the systems' order rotates from round to round.
# So a row's numbers for two systems are seconds apart, not minutes: this VM's
# speed drifts over minutes, and the round-by-round ratios below pair them.
run_row() {  # ROW SYS
  case $1 in
    idle) row_idle "$2" ;;
    hs) row_hs "$2" hs ;;
    hs12) row_hs "$2" hs12 --tls1_2 ;;
    resume) row_hs "$2" resume --resume ;;
    rr) row_rr "$2" rr "$RR_CONNS" ;;
    rr1) row_rr "$2" rr1 1 ;;
    sys) [[ $2 != direct ]] && row_sys "$2" ;;
    bulk) row_bulk "$2" ;;
    stime)
      row_stime "$2" stime13 -new
      row_stime "$2" stime12 -new -tls1_2
      row_stime "$2" stimere -reuse
      ;;
  esac
  return 0
}
rows_of() {  # ROW -> the table keys it fills (for a system that could not run)
  case $1 in
    hs | hs12 | resume) echo "$1 $1-cpu" ;;
    rr | rr1) echo "$1 $1-cpu $1-lat $1-add" ;;
    bulk) echo "bulk bulk-cpu" ;;
    stime) echo "stime13 stime12 stimere" ;;
    *) echo "$1" ;;
  esac
}
fail_keys() {  # ROW SYS REASON: every table cell the row would have filled
  local k
  for k in $(rows_of "$1"); do fail_row "$k" "$2" "$3"; done
}
read -ra SYSTEM_LIST <<<"$SYSTEMS"
for ROUND in $(seq "$ROUNDS"); do
  shift_by=$(((ROUND - 1) % ${#SYSTEM_LIST[@]}))
  ORDER=("${SYSTEM_LIST[@]:shift_by}" "${SYSTEM_LIST[@]:0:shift_by}")
  echo "  round $ROUND: ${ORDER[*]}" >&2
  declare -A CHECKED=() BROKEN=()
  for row in $ROWS; do
    [[ $row == stime ]] && ((ROUND > 1)) && continue  # a cross-check: once is enough
    if interleaved "$row"; then
      run_interleaved "$row" "${ORDER[@]}"
      [[ $row == rr || $row == rr1 ]] && added_latency "$row"
      continue
    fi
    for sys in "${ORDER[@]}"; do
      if [[ -n ${BROKEN[$sys]:-} ]]; then
        fail_keys "$row" "$sys" "${BROKEN[$sys]}"
        continue
      fi
      if [[ $sys != direct ]]; then
        started_for "$row" "$sys" || continue
        if ! verified_once "$row" "$sys"; then
          stop_system
          continue
        fi
      fi
      run_row "$row" "$sys"
      [[ $sys != direct ]] && stop_system
    done
    [[ $row == rr || $row == rr1 ]] && added_latency "$row"
  done
  unset CHECKED BROKEN
done

# Each cell: the round with the median number, and the range over rounds.
# A cell that failed in any round prints that failure.
aggregate() {
  local k r
  for k in "${!KEYS[@]}"; do
    local failed="" nums=()
    for r in $(seq "$ROUNDS"); do
      if [[ ${V[$k|$r]:-} == failed* ]]; then
        failed="${V[$k|$r]} (round $r)"
        break
      fi
      [[ -n ${N[$k|$r]:-} ]] && nums+=("${N[$k|$r]} $r")
    done
    if [[ -n $failed ]]; then
      V[$k]=$failed
      continue
    fi
    if ((${#nums[@]} == 0)); then
      V[$k]=${V[$k|1]:-}
      continue
    fi
    local sorted mid
    sorted=$(printf '%s\n' "${nums[@]}" | sort -g)
    mid=$(sed -n "$(((${#nums[@]} + 1) / 2))p" <<<"$sorted")
    V[$k]=${V[$k|${mid#* }]}
    N[$k]=${mid% *}
    if ((${#nums[@]} > 1)); then
      V[$k]+=" [$(calc %.0f "$(head -1 <<<"$sorted" | cut -d' ' -f1)")–$(calc %.0f "$(tail -1 <<<"$sorted" | cut -d' ' -f1)")]"
    fi
  done
}
aggregate

# --- the tables -------------------------------------------------------------
LABELS=(
  "hs|1. full mTLS handshakes/s (${HS_CONNS} conns, each counted after an echo)"
  "hs-cpu|1. full handshakes per CPU-second of the proxy"
  "hs12|1. full handshakes/s, TLS 1.2"
  "hs12-cpu|1. full TLS 1.2 handshakes per CPU-second"
  "resume|2. resumed handshakes/s (TLS 1.3 tickets)"
  "resume-cpu|2. resumed handshakes per CPU-second"
  "rr|3. requests/s (${RR_CONNS} keep-alive conns, 64 B echo)"
  "rr-cpu|3. requests per CPU-second"
  "rr-lat|3. p50 / p99 latency, µs (${RR_CONNS} conns)"
  "rr-add|3. added over direct, µs (${RR_CONNS} conns)"
  "rr1-lat|3. p50 / p99 latency, µs (1 conn)"
  "rr1-add|3. added over direct, µs (1 conn)"
  "sys|3. system calls per request (${RR_CONNS} conns; perf stat, a run of its own)"
  "bulk|4. bulk MB/s, one connection, ${BULK_MB} MiB one way"
  "bulk-cpu|4. MB per CPU-second"
  "idle|5. RSS added by ${IDLE_CONNS} idle mTLS connections"
)
print_table() {  # LABELS...
  local header="| row |" sep="|---|" l key
  for sys in $SYSTEMS; do header+=" $sys |"; sep+="---|"; done
  echo "$header"
  echo "$sep"
  for l in "$@"; do
    key=${l%%|*}
    local line="| ${l#*|} |"
    local any=""
    for sys in $SYSTEMS; do
      line+=" ${V[$key|$sys]:-} |"
      [[ -n ${V[$key|$sys]:-} ]] && any=1
    done
    [[ -n $any ]] && echo "$line"
  done
  return 0
}
echo "$HEADER"
echo "meshid binary of $(stat -c %y "$M" | cut -c1-19); $(haproxy -v | head -1 | cut -d' ' -f1-3);" \
  "$(nginx -v 2>&1 | cut -d' ' -f3); $(stunnel4 -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*');" \
  "$(openssl version | cut -d' ' -f1-2)"
echo
print_table "${LABELS[@]}"

echo
echo "Ratios meshid / other (higher is better for meshid, except latency and RSS where lower is):"
echo
echo "| row |$(for o in $SYSTEMS; do [[ $o == meshid || $o == direct ]] || printf ' %s |' "$o"; done)"
echo "|---|$(for o in $SYSTEMS; do [[ $o == meshid || $o == direct ]] || printf -- '---|'; done)"
ratio_row() {  # KEY LABEL
  [[ -n ${N[$1|meshid]:-} ]] || return 0
  local line="| $2 |" o
  for o in $SYSTEMS; do
    [[ $o == meshid || $o == direct ]] && continue
    local a=${N[$1|meshid]:-} b=${N[$1|$o]:-}
    if [[ -n $a && -n $b ]] && [[ $(calc %d "($b != 0)") == 1 ]]; then
      line+=" $(calc %.2f "$a / $b")× |"
    else
      line+=" — |"
    fi
  done
  echo "$line"
}
ratio_row hs "full handshakes/s"
ratio_row hs-cpu "full handshakes per CPU-s"
ratio_row hs12-cpu "full TLS 1.2 handshakes per CPU-s"
ratio_row resume "resumed handshakes/s"
ratio_row resume-cpu "resumed per CPU-s"
ratio_row rr "requests/s"
ratio_row rr-cpu "requests per CPU-s"
ratio_row rr-lat "p50 latency (${RR_CONNS} conns; lower is better)"
ratio_row rr1-add "p50 added latency (1 conn; lower is better)"
ratio_row sys "system calls per request (lower is better)"
ratio_row bulk "bulk MB/s"
ratio_row bulk-cpu "bulk MB per CPU-s"
ratio_row idle "idle RSS (lower is better)"

if ((ROUNDS > 1)); then
  echo
  if [[ $INTERLEAVE == 1 ]]; then
    echo "Round by round: each row's systems ran back to back (rows 3 and 4: in turns of one load run), so each"
    echo "round pairs them. Median over the rounds"
  else
    echo "Round by round: each row's systems ran back to back, so each round pairs them. Median over the rounds"
  fi
  echo "of meshid / other, in how many rounds meshid was the better of the two, and the one-sided sign test's p"
  echo "for that many (the chance of it if the two were equal and the rounds independent; this VM's drift"
  echo "makes rounds of one run alike, so a lead should also hold in another run):"
  echo
  echo "| row |$(for o in $SYSTEMS; do [[ $o == meshid || $o == direct ]] || printf ' %s |' "$o"; done)"
  echo "|---|$(for o in $SYSTEMS; do [[ $o == meshid || $o == direct ]] || printf -- '---|'; done)"
  paired_row() {  # KEY LABEL higher|lower (which is better)
    local key=$1 label=$2 better=$3 line o r
    line="| $label |"
    local any=""
    for o in $SYSTEMS; do
      [[ $o == meshid || $o == direct ]] && continue
      local ratios=() wins=0
      for r in $(seq "$ROUNDS"); do
        local a=${N[$key|meshid|$r]:-} b=${N[$key|$o|$r]:-}
        [[ -n $a && -n $b ]] || continue
        [[ $(calc %d "($b > 0 && $a > 0)") == 1 ]] || continue
        ratios+=("$(calc %.4f "$a / $b")")
        if [[ $better == higher ]]; then
          [[ $(calc %d "($a > $b)") == 1 ]] && wins=$((wins + 1))
        else
          [[ $(calc %d "($a < $b)") == 1 ]] && wins=$((wins + 1))
        fi
      done
      if ((${#ratios[@]} == 0)); then
        line+=" — |"
        continue
      fi
      any=1
      local med
      med=$(printf '%s\n' "${ratios[@]}" | median)
      line+=" $(calc %.2f "$med")× ($wins of ${#ratios[@]}, p $(sign_p "$wins" "${#ratios[@]}")) |"
    done
    [[ -n $any ]] && echo "$line"
    return 0
  }
  paired_row hs-cpu "full handshakes per CPU-s" higher
  paired_row hs12-cpu "full TLS 1.2 handshakes per CPU-s" higher
  paired_row resume-cpu "resumed per CPU-s" higher
  paired_row rr "requests/s (${RR_CONNS} conns)" higher
  paired_row rr-cpu "requests per CPU-s (${RR_CONNS} conns)" higher
  paired_row rr-add "p50 added latency (${RR_CONNS} conns; lower is better)" lower
  paired_row rr-add99 "p99 added latency (${RR_CONNS} conns; lower is better)" lower
  paired_row rr1-add "p50 added latency (1 conn; lower is better)" lower
  paired_row rr1-add99 "p99 added latency (1 conn; lower is better)" lower
  paired_row sys "system calls per request (lower is better)" lower
  paired_row bulk "bulk MB/s" higher
  paired_row bulk-cpu "bulk MB per CPU-s" higher
  paired_row idle "idle RSS (lower is better)" lower
fi

if has_row stime; then
  echo
  echo "Cross-check with openssl s_time (its own count; 'reached the backend' = completed and verified by the server):"
  echo
  print_table "stime13|s_time -new (TLS 1.3)" "stime12|s_time -new -tls1_2" "stimere|s_time -reuse (TLS 1.3)"
fi
echo
echo '```'
cat raw.log
echo '```'
