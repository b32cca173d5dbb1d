#!/usr/bin/env bash
# Runs meshid built with ThreadSanitizer (make tsan): the CA under its
# transport and server tests, then under load on both signing paths (the event
# loops sign; two signing threads answer across threads); the proxy under its
# mTLS and runtime tests (file certificates: no gRPC in the process). TSan's
# reports go to files, not the console; any report fails the run and is
# printed. scripts/tsan.supp names the one pattern suppressed, and why.
#   scripts/tsan.sh TSAN_MESHID REGULAR_BUILD_DIR
set -uo pipefail
TSAN_MESHID=$(realpath "$1")
BUILD=$(realpath "${2:-build}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/meshid-tsan.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/reports"
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 log_path=$W/reports/tsan suppressions=$REPO/scripts/tsan.supp print_suppressions=0"
failed=0

for t in ca_transport_test ca_server_test proxy_test proxy_runtime_test; do
  echo "--- $t under TSan"
  timeout 900 bash "$REPO/tests/integration/$t.sh" "$TSAN_MESHID" >"$W/$t.log" 2>&1 || failed=1
  tail -1 "$W/$t.log"
done

# load PORT KEY_TYPE: four seconds of 64 calls in flight
load_run() {
  timeout 60 "$BUILD/bench/meshid_ca_load" --seconds 4 --warmup 1 --target meshid --transport h2 \
    --addr "127.0.0.1:$1" --root state/ca/root-cert.pem --cert client/cert-chain.pem \
    --key client/key.pem --key-type "$2" --keys 64 --concurrency 64
}
for workers in 0 2; do
  echo "--- load under TSan, signing_workers: $workers"
  d="$W/load$workers"
  mkdir -p "$d" && cd "$d" || exit 1
  cat >ca.yaml <<YAML
trust_domain: example.org
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: state
limits: { max_concurrent_signings: 256, signing_workers: $workers }
YAML
  "$TSAN_MESHID" ca serve --config ca.yaml >ca.log 2>&1 &
  ca=$!
  pids+=("$ca")
  for _ in $(seq 300); do grep -q ' grpc=' ca.log 2>/dev/null && break; sleep 0.1; done
  port=$(grep -oE ' grpc=[0-9.]+:[0-9]+' ca.log | head -1 | sed 's/.*://')
  if [[ -z $port ]]; then echo "FAIL: the TSan CA did not start"; cat ca.log; failed=1; continue; fi
  "$BUILD/meshid" cert issue --ca state/ca --spiffe-id spiffe://example.org/ns/bench/sa/load \
    --ttl 1h --out client >/dev/null  # the ID the load generator's CSRs ask for
  for kt in ec-p256 rsa-2048; do
    out=$(load_run "$port" "$kt") || failed=1
    echo "$kt: $out"
    [[ $out == *'"errors":0'* ]] || { echo "FAIL: calls failed under TSan"; failed=1; }
  done
  kill -TERM "$ca"
  wait "$ca" 2>/dev/null
  rc=$?
  # 66 is TSan's exit code when it reported something (judged below).
  [[ $rc -eq 0 || $rc -eq 66 ]] || { echo "FAIL: the CA exited $rc on SIGTERM"; failed=1; }
done

reports=$(grep -l "WARNING: ThreadSanitizer" "$W"/reports/* 2>/dev/null | wc -l)
if ((reports > 0)); then
  echo "FAIL: ThreadSanitizer reported in $reports process(es):"
  cat "$W"/reports/*
  failed=1
else
  echo "ThreadSanitizer: no reports"
fi
exit $failed
