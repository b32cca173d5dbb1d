# Shared by bench/proxy_compare.sh and bench/proxy_ab.sh (sourced).

# A work directory for the run, made and entered now, removed at exit after
# every process in `pids` was stopped. The helpers below work in it.
enter_workdir() {  # NAME
  W=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap cleanup EXIT
  cd "$W"
}
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}

# A free port below the kernel's ephemeral range (32768-60999 here): the ports
# are picked once and bound again by every fresh start of a system, and an
# ephemeral port can meanwhile be taken by one of the load's thousands of
# outgoing connections (seen: meshid's admin port, in round 4 of 5). Never
# the same port twice in a run (picked-ports).
free_port() {
  python3 -c '
import os, random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
picked = set(open("picked-ports").read().split()) if os.path.exists("picked-ports") else set()
for _ in range(1000):
    p = random.randrange(10000, low)
    if str(p) in picked:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    open("picked-ports", "a").write(f"{p}\n")
    print(p)
    break
'
}
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -1; }  # KEY LINE
calc() { awk "BEGIN { printf \"$1\", $2 }"; }  # FORMAT EXPR
# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# The one-sided sign test: how likely `wins` or more of `n` paired rounds are
# when the two systems are equal (each round a coin toss), e.g. 10 of 12:
# 0.019. Small means "better beyond this VM's round-to-round noise"; 0.5 and
# up means the rounds say nothing. Ties count as losses (conservative). It
# takes the rounds as independent, and they are not quite: this VM's speed
# drifts over minutes, so rounds of one run resemble each other (two 15-round
# runs 20 minutes apart: 14 of 15 and 8 of 15). Trust a lead that holds
# across runs.
sign_p() {  # WINS N
  awk -v w="$1" -v n="$2" 'BEGIN {
    c = 1; p = 0
    for (k = 0; k <= n; k++) { if (k >= w) p += c; c = c * (n - k) / (k + 1) }
    printf "%.3f", p / 2 ^ n }'
}

# The mesh's certificates (ECDSA P-256 root + intermediate + leaves) from
# MESHID: ca/, server/ (spiffe://example.org/ns/web/sa/web), client/, and
# trust.pem (root + intermediate, what the servers verify clients against,
# so a client may present its leaf alone or its chain).
make_mesh_certs() {
  "$1" ca init --trust-domain example.org --out ca >/dev/null
  "$1" cert issue --ca ca --spiffe-id spiffe://example.org/ns/web/sa/web --out server >/dev/null
  "$1" cert issue --ca ca --spiffe-id spiffe://example.org/ns/shop/sa/client --out client >/dev/null
  cat ca/root-cert.pem ca/ca-cert.pem >trust.pem
}

# nginx's stream module terminating the same mTLS in front of BACKEND_PORT,
# one worker: nginx.conf in the work directory DIR, listening on PORT.
write_nginx_conf() {  # DIR PORT BACKEND_PORT
  cat >"$1/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
pid $1/nginx.pid;
error_log $1/nginx-error.log;
worker_processes 1;
worker_rlimit_nofile 10000;
events { worker_connections 5000; }
stream {
  server {
    listen 127.0.0.1:$2 ssl;
    ssl_certificate $1/server/cert-chain.pem;
    ssl_certificate_key $1/server/key.pem;
    ssl_client_certificate $1/trust.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_pass 127.0.0.1:$3;
  }
}
CONF
}
