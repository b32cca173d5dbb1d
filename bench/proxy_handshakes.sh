#!/usr/bin/env bash
# Full mTLS handshakes per second, side by side on the same certificates
# (ECDSA P-256, a 3-level chain): meshid proxy, haproxy, nginx (stream module)
# and stunnel, each terminating mTLS (client certificate required and
# verified) in front of the same plaintext backend. Each system gets one
# worker pinned to core 0; the load, `openssl s_time -new`, runs on core 1.
# Also reports each system's CPU per handshake (utime + stime from /proc).
# This is the first row of issue 5's benchmark; resumed handshakes, request
# latency, bulk throughput and idle-connection memory are not measured yet.
# Usage: bench/proxy_handshakes.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
BUILD=$(realpath "${1:-build}")
SECS=${2:-8}
W=$(mktemp -d /tmp/meshid-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
M="$BUILD/meshid"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

"$M" ca init --trust-domain example.org --out ca >/dev/null
"$M" cert issue --ca ca --spiffe-id spiffe://example.org/ns/web/sa/web --out server >/dev/null
"$M" cert issue --ca ca --spiffe-id spiffe://example.org/ns/shop/sa/client --out client >/dev/null
# s_time presents only its leaf, so every server trusts root + intermediate.
cat ca/root-cert.pem ca/ca-cert.pem >trust.pem
cat server/cert-chain.pem server/key.pem >server/combined.pem

BACKEND=$(free_port)
python3 - "$BACKEND" >/dev/null 2>&1 <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
while True:
    c, _ = s.accept(); c.close()
PY
pids+=($!)
wait_port "$BACKEND"

declare -A port pid
start() {  # NAME CMD...: starts a system pinned to core 0
  local name=$1
  shift
  taskset -c 0 "$@" >"$name.log" 2>&1 &
  pid[$name]=$!
  pids+=($!)
}

port[meshid]=$(free_port)
cat >proxy.yaml <<YAML
trust_domain: example.org
certificates: {cert_file: server/cert-chain.pem, key_file: server/key.pem, bundle_file: trust.pem}
admin_listen: 127.0.0.1:0
workers: 1
inbound: [{name: in, listen: 127.0.0.1:${port[meshid]}, forward: 127.0.0.1:$BACKEND}]
YAML
start meshid "$M" proxy --config proxy.yaml --log-level warn

port[haproxy]=$(free_port)
cat >haproxy.cfg <<CFG
global
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:${port[haproxy]} ssl crt $W/server/combined.pem ca-file $W/trust.pem verify required
  default_backend b
backend b
  server s 127.0.0.1:$BACKEND
CFG
start haproxy haproxy -f haproxy.cfg -db

port[nginx]=$(free_port)
cat >nginx.conf <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
worker_processes 1;
events { worker_connections 4096; }
stream {
  server {
    listen 127.0.0.1:${port[nginx]} ssl;
    ssl_certificate $W/server/cert-chain.pem;
    ssl_certificate_key $W/server/key.pem;
    ssl_client_certificate $W/trust.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_pass 127.0.0.1:$BACKEND;
  }
}
CONF
start nginx nginx -e "$W/nginx-error.log" -c "$W/nginx.conf"

port[stunnel]=$(free_port)
cat >stunnel.conf <<CONF
foreground = yes
pid =
[tls]
accept = 127.0.0.1:${port[stunnel]}
connect = 127.0.0.1:$BACKEND
cert = $W/server/cert-chain.pem
key = $W/server/key.pem
CAfile = $W/trust.pem
verifyChain = yes
sslVersionMin = TLSv1.2
CONF
start stunnel stunnel4 stunnel.conf

ticks=$(getconf CLK_TCK)
# CPU of a process and its children threads (nginx: the worker is a child).
cpu_of() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$total"
}

echo "| system | handshakes/s | CPU-seconds of the system | handshakes per CPU-second |"
echo "|---|---|---|---|"
declare -A rate per_cpu
for name in meshid haproxy nginx stunnel; do
  wait_port "${port[$name]}" || { echo "$name did not start"; cat "$name.log"; continue; }
  c0=$(cpu_of "${pid[$name]}")
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:${port[$name]}" -new -time "$SECS" \
    -cert client/cert-chain.pem -key client/key.pem 2>&1 || true)
  c1=$(cpu_of "${pid[$name]}")
  n=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' <<<"$out" | head -1)
  real=$(sed -n 's/^[0-9]* connections in \([0-9.]*\) real seconds.*/\1/p' <<<"$out" | head -1)
  [[ -n $n && -n $real ]] || { echo "| $name | failed: $(tail -2 <<<"$out" | tr '\n' ' ') | | |"; continue; }
  cpu=$(awk -v a="$c0" -v b="$c1" -v k="$ticks" 'BEGIN { printf "%.2f", (b - a) / k }')
  rate[$name]=$(awk -v n="$n" -v r="$real" 'BEGIN { printf "%.0f", n / r }')
  per_cpu[$name]=$(awk -v n="$n" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')
  echo "| $name | ${rate[$name]} | $cpu | ${per_cpu[$name]} |"
done
echo
for other in haproxy nginx stunnel; do
  [[ -n ${rate[meshid]:-} && -n ${rate[$other]:-} ]] || continue
  awk -v a="${rate[meshid]}" -v b="${rate[$other]}" -v c="${per_cpu[meshid]}" -v d="${per_cpu[$other]}" -v o="$other" \
    'BEGIN { printf "meshid / %s: %.2fx handshakes/s, %.2fx per CPU-second\n", o, a / b, (d > 0 ? c / d : 0) }'
done
