#!/usr/bin/env bash
# CA issuance benchmark: meshid vs Debian's cfssl vs the openssl-speed bound.
# Each server is pinned to core 0, the load generator to core 1 (taskset).
# The load generator calls meshid through its h2 transport (gRPC's wire
# protocol on nghttp2 + OpenSSL, one thread): 15-30 us of client CPU per call
# at 8 or more calls open, where the gRPC C++ client spends 50-120 us and fills
# its core before the server does. LOAD_TRANSPORT=grpc uses gRPC C++ instead.
# Usage: bench/ca_issuance.sh [BUILD_DIR] [SECONDS]
# KEY_TYPES="ec-p256" and CONCURRENCY="64" run a subset of the cells; ROUNDS=N
# runs each cell N times (meshid and cfssl alternating) and prints medians;
# with N > 1 the bound is measured again right before and right after each
# meshid round, and each round is also shown against the mean of the two.
# CA_LIMITS adds keys to ca.yaml's limits, e.g. CA_LIMITS="malloc_thread_cache: 0"
# to run the CA without its allocator setting (docs/PERFORMANCE.md).
set -euo pipefail
BUILD=$(realpath "${1:-build}")
SECS=${2:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD_TRANSPORT=${LOAD_TRANSPORT:-h2}
ROUNDS=${ROUNDS:-1}  # per cell; the table shows medians (this VM spreads ±15-25 % run to run)
W=$(mktemp -d /tmp/meshid-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
M="$BUILD/meshid"; LOAD="$BUILD/bench/meshid_ca_load"

# --- the bound: one CSR verify + one certificate sign, on the server's core
speed() { taskset -c "$SERVER_CPU" openssl speed -seconds 3 "$@" 2>/dev/null; }
p256_speeds() { speed ecdsap256 | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1), $NF}'; }  # sign/s verify/s
rsa_verify_speed() { speed rsa2048 | awk '/^rsa 2048 bits/ {print $NF}'; }
p256=$(p256_speeds)
p256_sign=${p256% *}; p256_verify=${p256#* }
rsa_verify=$(rsa_verify_speed)
bound() { awk -v s="$1" -v v="$2" 'BEGIN { printf "%.0f", 1 / (1/s + 1/v) }'; }
bound_ec=$(bound "$p256_sign" "$p256_verify")
bound_rsa=$(bound "$p256_sign" "$rsa_verify")

# --- meshid CA: self-signed P-256 CA; the load authenticates with mTLS
cat > ca.yaml <<YAML
trust_domain: example.org
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: state
issuance: { default_ttl: 1h, max_ttl: 24h }
limits: { max_concurrent_signings: 256${CA_LIMITS:+, $CA_LIMITS} }
YAML
# Info level, as in production: every issuance writes its "CSR signed" line.
taskset -c "$SERVER_CPU" "$M" ca serve --config ca.yaml > ca.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ' grpc=' ca.log 2>/dev/null && break; sleep 0.1; done
port=$(grep -oE ' grpc=[0-9.]+:[0-9]+' ca.log | head -1 | sed 's/.*://')
[[ -n $port ]] || { echo "meshid CA did not start" >&2; cat ca.log >&2; exit 1; }
"$M" cert issue --ca state/ca --spiffe-id spiffe://example.org/ns/bench/sa/load --ttl 2h --out client >/dev/null

# --- cfssl serve with the same intermediate, same pinning
cat > cfssl.json <<JSON
{"signing": {"default": {"expiry": "1h", "usages": ["digital signature", "key encipherment", "server auth", "client auth"]}}}
JSON
cfssl_port=$((20000 + RANDOM % 20000))
taskset -c "$SERVER_CPU" cfssl serve -address 127.0.0.1 -port "$cfssl_port" -ca state/ca/ca-cert.pem \
  -ca-key state/ca/ca-key.pem -config cfssl.json > cfssl.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$cfssl_port/api/v1/cfssl/info" -d '{}' && break; sleep 0.1; done

run() { taskset -c "$LOAD_CPU" "$LOAD" --seconds "$SECS" --warmup 2 "$@"; }
bound_now() {  # KEY_TYPE -> the bound measured now
  local s v
  read -r s v < <(p256_speeds)
  [[ $1 == rsa-2048 ]] && v=$(rsa_verify_speed)
  bound "$s" "$v"
}
# median JSON...: each number's median over the rounds (errors summed); with
# ROUNDS > 1 the rounds' own rates are kept in .rounds.
median() {
  printf '%s\n' "$@" | jq -sc '
    def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    { per_second: (map(.per_second) | med), p50_ms: (map(.p50_ms) | med), p99_ms: (map(.p99_ms) | med),
      errors: (map(.errors) | add), first_error: (map(.first_error // empty) | first),
      rounds: map(.per_second | floor) }'
}
printf '\nCA issuance, %ss per cell x %s round(s) (medians), server on cpu %s, load on cpu %s (%s transport) (%s)\n' \
  "$SECS" "$ROUNDS" "$SERVER_CPU" "$LOAD_CPU" "$LOAD_TRANSPORT" "$(date -u +%FT%TZ)"
printf 'openssl speed on cpu %s: P-256 sign %s/s, verify %s/s; RSA-2048 verify %s/s\n' "$SERVER_CPU" "$p256_sign" "$p256_verify" "$rsa_verify"
printf 'meshid CA: %s\n' "$(grep -m1 -o 'malloc thread cache: .*' ca.log || echo 'no thread-cache line in its log')"
printf '%-9s %4s | %9s %8s %8s | %9s %8s %8s | %6s %9s %9s\n' csr conc "meshid/s" "p50 ms" "p99 ms" "cfssl/s" "p50 ms" "p99 ms" bound "% bound" "x cfssl"
for kt in ${KEY_TYPES:-ec-p256 rsa-2048}; do
  keys=2000; [[ $kt == rsa-2048 ]] && keys=64
  b=$bound_ec; [[ $kt == rsa-2048 ]] && b=$bound_rsa
  for c in ${CONCURRENCY:-1 8 64}; do
    ms=() fs=() rb=() rp=()
    for ((round = 0; round < ROUNDS; round++)); do  # meshid and cfssl alternate
      # The bound again, right before and right after this round (their
      # mean): the VM's speed drifts within minutes, so the run's first
      # measurement may not be this round's.
      ((ROUNDS > 1)) && b_before=$(bound_now "$kt")
      ms+=("$(run --target meshid --transport "$LOAD_TRANSPORT" --addr "127.0.0.1:$port" \
                --root state/ca/root-cert.pem --cert client/cert-chain.pem --key client/key.pem \
                --key-type "$kt" --keys "$keys" --concurrency "$c")")
      ((ROUNDS > 1)) && rb+=("$(((b_before + $(bound_now "$kt")) / 2))")
      fs+=("$(run --target cfssl --addr "127.0.0.1:$cfssl_port" --key-type "$kt" --keys "$keys" \
                --concurrency "$c" || echo '{"per_second":0,"p50_ms":0,"p99_ms":0,"errors":1,"first_error":"no result"}')")
    done
    m=$(median "${ms[@]}")
    f=$(median "${fs[@]}")
    round_bounds=""
    if ((ROUNDS > 1)); then  # each round against the bound measured next to it
      for i in "${!ms[@]}"; do rp+=("$(jq -rn --argjson j "${ms[$i]}" --arg b "${rb[$i]}" '$j.per_second / ($b|tonumber) * 100 | floor')"); done
      round_bounds="  bound by round ${rb[*]} -> $(IFS=/; echo "${rp[*]}")% (median $(printf '%s\n' "${rp[@]}" | sort -n | sed -n "$(((${#rp[@]} + 1) / 2))p")%)"
    fi
    jq -rn --argjson m "$m" --argjson f "$f" --arg b "$b" --arg kt "$kt" --arg c "$c" --arg rb "$round_bounds" '
      "\($kt | .[0:9]) \($c) | \($m.per_second|floor) \($m.p50_ms*100|floor/100) \($m.p99_ms*100|floor/100) | \($f.per_second|floor) \($f.p50_ms*100|floor/100) \($f.p99_ms*100|floor/100) | \($b) \($m.per_second / ($b|tonumber) * 100 | floor)% \($m.per_second / $f.per_second * 100 | floor / 100)x" +
      (if $m.errors > 0 then "  meshid errors: \($m.errors) \($m.first_error)" else "" end) +
      (if $f.errors > 0 then "  cfssl errors: \($f.errors) \($f.first_error)" else "" end) +
      (if ($m.rounds | length) > 1 then "  rounds: meshid \($m.rounds | join("/")), cfssl \($f.rounds | join("/"))" else "" end) + $rb' |
      awk -F' \\| ' '{ split($1,a," "); split($2,m," "); split($3,f," "); split($4,r," ");
        rest = $4; sub(/^[^ ]+ +[^ ]+ +[^ ]+ */, "", rest)
        printf "%-9s %4s | %9s %8s %8s | %9s %8s %8s | %6s %9s %9s %s\n", a[1], a[2], m[1], m[2], m[3], f[1], f[2], f[3], r[1], r[2], r[3], rest }'
  done
done

# --- the gRPC transport's ceiling on the server's core: the CA's TLS setup and
# Istio's API answering a fixed chain (bench/ca_grpc_ceiling.cc), no signing,
# on meshid's own transport (src/rpc, what the CA runs on) and on gRPC C++
# (what it ran on before). Server CPU per call plus the two signatures' cost
# (the bound) is the most a CA behind that transport can do on one core;
# printed to show what limits meshid.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for transport in ${CEILING_TRANSPORTS-rpc grpc}; do  # CEILING_TRANSPORTS="" skips these
  taskset -c "$SERVER_CPU" "$BUILD/bench/meshid_ca_grpc_ceiling" --transport "$transport" \
    --identity state/serving/identity.pem --roots state/serving/roots.pem \
    --chain client/cert-chain.pem > "ceiling-$transport.log" 2>&1 &
  ceiling_pid=$!
  pids+=($ceiling_pid)
  for _ in $(seq 100); do grep -q 'port=' "ceiling-$transport.log" 2>/dev/null && break; sleep 0.1; done
  ceiling_port=$(sed -n 's/.*port=//p' "ceiling-$transport.log")
  printf '\nceiling of the %s transport on cpu %s (fixed answer, no signing; load on cpu %s)\n' \
    "$transport" "$SERVER_CPU" "$LOAD_CPU"
  printf '%4s | %9s %8s | %12s | %s\n' conc "calls/s" "p99 ms" "server us/call" "most a P-256 CA can do = 1/(us/call + 1/bound)"
  for c in ${CONCURRENCY:-1 8 64}; do
    t0=$(cpu_ticks "$ceiling_pid")
    j=$(taskset -c "$LOAD_CPU" "$LOAD" --seconds "$SECS" --warmup 0 --target meshid \
          --transport "$LOAD_TRANSPORT" --addr "127.0.0.1:$ceiling_port" \
          --root state/ca/root-cert.pem --cert client/cert-chain.pem --key client/key.pem --key-type ec-p256 \
          --keys 64 --concurrency "$c")
    t1=$(cpu_ticks "$ceiling_pid")
    jq -rn --argjson j "$j" --arg t "$((t1 - t0))" --arg hz "$(getconf CLK_TCK)" --arg b "$bound_ec" --arg c "$c" '
      (($t|tonumber) / ($hz|tonumber) / $j.ok * 1e6) as $us |
      (1 / ($us / 1e6 + 1 / ($b|tonumber))) as $most |
      "\($c) | \($j.per_second|floor) \($j.p99_ms*100|floor/100) | \($us|floor) | \($most|floor)/s = \($most / ($b|tonumber) * 100 | floor)% of the bound"' |
      awk -F' \\| ' '{ split($2,m," "); printf "%4s | %9s %8s | %12s | %s\n", $1, m[1], m[2], $3, $4 }'
  done
  kill -TERM "$ceiling_pid" 2>/dev/null || true
  wait "$ceiling_pid" 2>/dev/null || true
done
