#!/usr/bin/env bash
# Two builds of the meshid proxy against each other and against nginx, in
# paired rounds: for a change to the data path whose effect is a few percent,
# below what bench/proxy_compare.sh's separate runs can show on this VM.
# Same setup as proxy_compare.sh (ECDSA P-256 mTLS, client certificate
# required, one worker pinned to core 0; load and backend, both
# bench/meshid_tls_load, on core 1). Each round runs A, B and nginx back to
# back, each freshly started, in an order that rotates; the summary gives the
# median over the rounds of each pair's per-round ratio and in how many
# rounds the first of the pair was better.
#
# Usage: bench/proxy_ab.sh A_MESHID B_MESHID [BUILD_DIR]
#   A_MESHID, B_MESHID: two `meshid` binaries (copy the old one aside before
#   rebuilding); BUILD_DIR holds bench/meshid_tls_load (default build).
# Environment: ROUNDS (6), SECS (5, per keep-alive cell), MODES ("rr bulk"):
#   rr = 32 keep-alive connections (RR_CONNS), requests per CPU-second;
#   bulk = BULK_MB (4096) MiB one way through one connection, MB per
#   CPU-second (the CPU is read in 10 ms ticks: give bulk enough bytes).
#   B_CONFIG: lines added to B's proxy.yaml only, to compare a setting with
#   one binary (A and B the same file), e.g. B_CONFIG="busy_poll: 50us".
# Example (≈ 6 min): flock /tmp/meshid-build.lock bash bench/proxy_ab.sh /tmp/meshid.old build/meshid
set -euo pipefail
HERE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")  # before any cd
A=$(realpath "$1")
B=$(realpath "$2")
BUILD=$(realpath "${3:-build}")
LOAD="$BUILD/bench/meshid_tls_load"
ROUNDS=${ROUNDS:-6}
SECS=${SECS:-5}
MODES=${MODES:-rr bulk}
RR_CONNS=${RR_CONNS:-32}
BULK_MB=${BULK_MB:-4096}
[[ -x $A && -x $B && -x $LOAD ]] || { echo "need $A, $B and $LOAD" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
source "$HERE/proxy_lib.sh"
enter_workdir meshid-ab

make_mesh_certs "$A"
TLS=(--cert client/cert-chain.pem --key client/key.pem --ca trust.pem)
BACKEND=$(free_port)
taskset -c 1 "$LOAD" serve --listen "127.0.0.1:$BACKEND" >backend.log 2>&1 &
pids+=($!)
wait_port "$BACKEND"
PORT=$(free_port)
cat >proxy.yaml <<YAML
trust_domain: example.org
certificates: {cert_file: server/cert-chain.pem, key_file: server/key.pem, bundle_file: trust.pem}
admin_listen: 127.0.0.1:$(free_port)
workers: 1
inbound: [{name: in, listen: 127.0.0.1:$PORT, forward: 127.0.0.1:$BACKEND}]
YAML
{ cat proxy.yaml; printf '%s\n' "${B_CONFIG:-}"; } >proxy-b.yaml
write_nginx_conf "$W" "$PORT" "$BACKEND"

SYS_PID=
start() {
  case $1 in
    A) taskset -c 0 "$A" proxy --config proxy.yaml --log-level warn >a.log 2>&1 & ;;
    B) taskset -c 0 "$B" proxy --config proxy-b.yaml --log-level warn >b.log 2>&1 & ;;
    nginx) taskset -c 0 nginx -e "$W/nginx-error.log" -c "$W/nginx.conf" >nginx.log 2>&1 & ;;
  esac
  SYS_PID=$!
  wait_port "$PORT"
}
stop() {
  kill -TERM "$SYS_PID" 2>/dev/null || true
  wait "$SYS_PID" 2>/dev/null || true
}
sys_pids() { echo "$SYS_PID" $(pgrep -P "$SYS_PID" || true) | tr ' ' ','; }

printf 'proxy A/B, %s: A=%s B=%s%s, %s rounds\n' "$(date -u +%FT%TZ)" "$A" "$B" \
  "${B_CONFIG:+ (with $B_CONFIG)}" "$ROUNDS"
declare -A R
orders=("A B nginx" "B nginx A" "nginx A B")
for ((r = 1; r <= ROUNDS; r++)); do
  for m in $MODES; do
    for s in ${orders[$(((r - 1) % 3))]}; do
      start "$s"
      if [[ $m == rr ]]; then
        out=$(taskset -c 1 "$LOAD" rr --connect "127.0.0.1:$PORT" "${TLS[@]}" --conns "$RR_CONNS" \
          --seconds "$SECS" --pids "$(sys_pids)" 2>&1 | tail -1)
        n=$(kv requests "$out")
        v=$([[ -n $n ]] && awk -v n="$n" -v c="$(kv cpu_s "$out")" 'BEGIN { printf "%.0f", n / c }')
      else
        out=$(taskset -c 1 "$LOAD" bulk --connect "127.0.0.1:$PORT" "${TLS[@]}" \
          --bytes $((BULK_MB * 1048576)) --pids "$(sys_pids)" 2>&1 | tail -1)
        c=$(kv cpu_s "$out")
        v=$([[ -n $c ]] && awk -v c="$c" -v mb="$BULK_MB" 'BEGIN { printf "%.0f", mb * 1.048576 / c }')
      fi
      stop
      [[ -n $v && ${out} != *"errors="[1-9]* ]] || { echo "r$r $m $s failed: $out" >&2; exit 1; }
      R[$m,$s,$r]=$v
      echo "r$r $m $s per_cpu_s=$v  $out"
    done
  done
done
echo
for m in $MODES; do
  for pair in "B A" "A nginx" "B nginx"; do
    read -r x y <<<"$pair"
    ratios=() wins=0
    for ((r = 1; r <= ROUNDS; r++)); do
      q=$(awk -v a="${R[$m,$x,$r]}" -v b="${R[$m,$y,$r]}" 'BEGIN { printf "%.3f", a / b }')
      ratios+=("$q")
      awk -v q="$q" 'BEGIN { exit !(q > 1) }' && wins=$((wins + 1))
    done
    med=$(calc %.3f "$(printf '%s\n' "${ratios[@]}" | median)")
    echo "$m per CPU-second $x/$y: median $med, $x better in $wins of $ROUNDS rounds (sign test p $(sign_p "$wins" "$ROUNDS")): ${ratios[*]}"
  done
done
