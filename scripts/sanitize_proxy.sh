#!/usr/bin/env bash
# Runs the proxy built by GCC with ASan and UBSan (make sanitize-proxy) under
# its integration tests; the CA and the agent come from the regular build.
#  - meshid-proxy (no gRPC, certificates from files): the mTLS, runtime and
#    TLS 1.3 record-layer tests.
#  - `meshid proxy` from the same sanitized build, whose SDS client (gRPC)
#    meshid-proxy leaves out: the SDS test (a scripted server and the real
#    agent) and the rotation test, where the server-side proxy takes its
#    certificates from the agent over SDS.
# A report fails the test it came from: a command's through its exit status,
# a server's (at exit too: a leak, a use after free in teardown) because the
# harness reads every server's log for reports (tests/integration/lib.sh).
#   scripts/sanitize_proxy.sh SANITIZED_BUILD_DIR REGULAR_BUILD_DIR
set -uo pipefail
SAN=$(realpath "$1")
BUILD=$(realpath "${2:-build}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/meshid-asan.XXXXXX)
trap 'rm -rf "$W"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0

run() {  # NAME, then env assignments for the test
  local t=$1
  shift
  echo "--- $t ($*)"
  env "$@" timeout 600 bash "$REPO/tests/integration/$t.sh" "$BUILD/meshid" >"$W/$t.log" 2>&1 || {
    failed=1
    grep -E '^FAIL' "$W/$t.log"
  }
  tail -1 "$W/$t.log"
}
run proxy_test PROXY_BIN="$SAN/meshid-proxy"
run proxy_runtime_test PROXY_BIN="$SAN/meshid-proxy"
run proxy_record_layer_test PROXY_BIN="$SAN/meshid-proxy"
run proxy_sds_test PROXY_MESHID="$SAN/meshid"
run proxy_rotation_test PROXY_MESHID="$SAN/meshid"

exit $failed
