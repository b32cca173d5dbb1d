# Tiny harness for meshid's integration scripts. Source it from a script that
# was started as `bash SCRIPT MESHID_BINARY`:
#
#   source "$(dirname "$0")/lib.sh" "$@"
#   check NAME CMD...                     passes when CMD exits 0
#   check_fails NAME CMD...               passes when CMD exits non-zero (not a timeout or signal)
#   check_exit NAME CODE CMD...           passes when CMD exits with CODE (CODE may be "1|2")
#   check_output_contains NAME TEXT CMD...        exit 0 and stdout+stderr contain TEXT
#   check_fails_with NAME CODE TEXT CMD...        exit CODE and stdout+stderr contain TEXT
#   check_output_lacks NAME TEXT CMD...           stdout+stderr do not contain TEXT (any exit < 124)
#   expect_eq NAME EXPECTED ACTUAL / expect_true NAME CMD... / pass / fail NAME WHY [CMD...]
#   expect_contains NAME TEXT NEEDLE / expect_lacks NAME TEXT NEEDLE
#   run CMD...                            runs CMD (with the timeout), sets RC, OUT (stdout), ERR (stderr)
#   start_server LOG CMD...               starts CMD in the background, records its PID
#   wait_for_accept LOG                   polls LOG for "ACCEPT host:port", prints the port
#   wait_for_log LOG TEXT / wait_for_log_count LOG TEXT N   bounded polls of a server log
#   split_chain FILE PREFIX               PREFIX1.pem, PREFIX2.pem, ... one certificate each
#   start_ca LOG                          `meshid ca serve --config ca.yaml`; sets CA_PID GRPC ADMIN
#   finish                                prints "N passed, N failed" and exits 1 on any failure
#
# Every command runs under `timeout` ($CMD_TIMEOUT s, at most 10 s), with standard
# input from /dev/null unless STDIN=FILE is given before the helper
# (e.g. `STDIN=chain.pem check_output_contains ...`). TEXT matches are fixed strings.
# A check whose NAME starts with "BUG:" pins a known defect in src/: it fails until
# the defect is fixed.

set -u
set -o pipefail

if [[ $# -lt 1 || ! -x "$1" ]]; then
  echo "usage: bash $0 PATH/TO/meshid (got: ${1:-nothing})" >&2
  exit 2
fi
MESHID=$(realpath "$1")
# The proxy under test, for the proxy scripts: `meshid proxy`; or
# `$PROXY_MESHID proxy`, another meshid binary's proxy (make sanitize-proxy:
# one built with GCC's sanitizers, SDS client included); or PROXY_BIN, a
# meshid-proxy (no gRPC, so certificates from files only).
if [[ -n ${PROXY_BIN:-} ]]; then
  PROXY=("$PROXY_BIN")
else
  PROXY=("${PROXY_MESHID:-$MESHID}" proxy)
fi
export MESHID
CMD_TIMEOUT=10
SERVER_LIFETIME=60  # a server that outlives the script by accident dies on its own
TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshid-it.XXXXXX") || exit 2
PASSED=0
FAILED=0
FINISHED=0
SERVER_PIDS=()
SERVER_LOGS=()  # start_server's, read by finish for sanitizer reports
RC=0
OUT=""
ERR=""

_stop_servers() {
  local pid i
  for pid in "${SERVER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${SERVER_PIDS[@]}"; do
    for ((i = 0; i < 40; i++)); do  # up to 2 s, then SIGKILL
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  SERVER_PIDS=()
}

_cleanup() {
  local status=$?
  _stop_servers
  rm -rf "$TMP"
  if [[ $FINISHED -eq 0 ]]; then
    echo "FAIL: the script ended early (exit status $status) after $PASSED passed, $FAILED failed"
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
  fi
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command with the timeout; sets RC, OUT and ERR.
run() {
  local stdin=${STDIN:-/dev/null}
  timeout -k 2 "$CMD_TIMEOUT" "$@" <"$stdin" >"$TMP/.out" 2>"$TMP/.err"
  RC=$?
  IFS= read -r -d '' OUT <"$TMP/.out"  # builtin reads: no fork per check
  IFS= read -r -d '' ERR <"$TMP/.err"
  OUT=${OUT%$'\n'}
  ERR=${ERR%$'\n'}
}

_quote() {
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  printf '%s' "${out% }"
}

pass() {
  PASSED=$((PASSED + 1))
}

# fail NAME WHY [COMMAND-WORDS...]: prints the failure with the last command's output.
fail() {
  local name=$1 why=$2
  shift 2
  FAILED=$((FAILED + 1))
  echo "FAIL: $name"
  echo "  why:     $why"
  if [[ $# -gt 0 ]]; then
    echo "  command: $(_quote "$@")${STDIN:+ < $STDIN}"
    echo "  exit:    $RC"
    [[ -n "$OUT" ]] && printf '%s\n' "$OUT" | head -n 40 | sed 's/^/  stdout| /'
    [[ -n "$ERR" ]] && printf '%s\n' "$ERR" | head -n 40 | sed 's/^/  stderr| /'
  fi
  return 0
}

_crashed() {  # timeout (124), killed (137) or another signal
  [[ $RC -ge 124 ]]
}

_exit_matches() {  # _exit_matches "1|2" -> is RC one of them
  local want
  IFS='|' read -ra want <<<"$1"
  local w
  for w in "${want[@]}"; do
    [[ "$RC" == "$w" ]] && return 0
  done
  return 1
}

check() {
  local name=$1
  shift
  run "$@"
  if [[ $RC -eq 0 ]]; then pass; else fail "$name" "expected exit 0" "$@"; fi
}

check_fails() {
  local name=$1
  shift
  run "$@"
  if [[ $RC -eq 0 ]]; then
    fail "$name" "expected a failure, got exit 0" "$@"
  elif _crashed; then
    fail "$name" "expected a clean failure, got a timeout or signal" "$@"
  else
    pass
  fi
}

check_exit() {
  local name=$1 code=$2
  shift 2
  run "$@"
  if _exit_matches "$code"; then pass; else fail "$name" "expected exit $code" "$@"; fi
}

check_output_contains() {
  local name=$1 text=$2
  shift 2
  run "$@"
  if [[ $RC -ne 0 ]]; then
    fail "$name" "expected exit 0 and output containing '$text'" "$@"
  elif [[ "$OUT"$'\n'"$ERR" != *"$text"* ]]; then
    fail "$name" "output does not contain '$text'" "$@"
  else
    pass
  fi
}

check_fails_with() {
  local name=$1 code=$2 text=$3
  shift 3
  run "$@"
  if ! _exit_matches "$code"; then
    fail "$name" "expected exit $code and output containing '$text'" "$@"
  elif [[ "$OUT"$'\n'"$ERR" != *"$text"* ]]; then
    fail "$name" "output does not contain '$text'" "$@"
  else
    pass
  fi
}

check_output_lacks() {
  local name=$1 text=$2
  shift 2
  run "$@"
  if _crashed; then
    fail "$name" "timeout or signal" "$@"
  elif [[ "$OUT"$'\n'"$ERR" == *"$text"* ]]; then
    fail "$name" "output contains '$text'" "$@"
  else
    pass
  fi
}

expect_eq() {
  local name=$1 expected=$2 actual=$3
  if [[ "$expected" == "$actual" ]]; then
    pass
  else
    FAILED=$((FAILED + 1))
    echo "FAIL: $name"
    echo "  expected: $expected"
    echo "  actual:   $actual"
  fi
}

# expect_contains NAME TEXT NEEDLE / expect_lacks NAME TEXT NEEDLE: fixed-string tests, no forks.
expect_contains() {
  if [[ "$2" == *"$3"* ]]; then
    pass
  else
    FAILED=$((FAILED + 1))
    echo "FAIL: $1"
    echo "  expected to find: $3"
    printf '%s\n' "$2" | head -n 20 | sed 's/^/  in| /'
  fi
}
expect_lacks() {
  if [[ "$2" != *"$3"* ]]; then
    pass
  else
    FAILED=$((FAILED + 1))
    echo "FAIL: $1"
    echo "  expected not to find: $3"
    printf '%s\n' "$2" | head -n 20 | sed 's/^/  in| /'
  fi
}

# expect_true NAME CMD...: like check, for test(1)-style conditions (no timeout needed).
expect_true() {
  local name=$1
  shift
  if "$@"; then
    pass
  else
    FAILED=$((FAILED + 1))
    echo "FAIL: $name"
    echo "  condition false: $(_quote "$@")"
  fi
}

# start_server LOG CMD...: runs CMD in the background (stdin /dev/null, stdout and
# stderr to LOG) under a timeout of $SERVER_LIFETIME s; records its PID for the EXIT trap.
start_server() {
  local log=$1
  shift
  timeout -k 2 "$SERVER_LIFETIME" "$@" </dev/null >"$log" 2>&1 &
  SERVER_PIDS+=("$!")
  SERVER_LOGS+=("$(realpath -m "$log")")
  LAST_SERVER_PID=$!
}

# stop_server PID: SIGTERM, bounded wait, then SIGKILL.
stop_server() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  for i in "${SERVER_PIDS[@]}"; do [[ $i != "$pid" ]] && keep+=("$i"); done
  SERVER_PIDS=("${keep[@]}")
}

# wait_for_accept LOG [PID]: polls LOG (up to 10 s) for openssl's "ACCEPT host:port"
# line and prints the port; returns 1 if it never comes or the server died.
wait_for_accept() {
  local log=$1 pid=${2:-${LAST_SERVER_PID:-}} i port
  for ((i = 0; i < 200; i++)); do
    port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$log" 2>/dev/null | head -n 1)
    if [[ -n "$port" ]]; then
      echo "$port"
      return 0
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  echo "server never printed ACCEPT; its log:" >&2
  sed 's/^/  log| /' "$log" >&2
  return 1
}

# wait_for_log LOG TEXT: polls LOG (up to 5 s) for a fixed string.
wait_for_log() {
  local log=$1 text=$2 i
  for ((i = 0; i < 100; i++)); do
    grep -qF -- "$text" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# wait_for_log_count LOG TEXT N: polls LOG (up to 5 s) for N lines holding a fixed string.
wait_for_log_count() {
  local log=$1 text=$2 n=$3 i
  for ((i = 0; i < 100; i++)); do
    [[ $(grep -cF -- "$text" "$log" 2>/dev/null) -ge $n ]] && return 0
    sleep 0.05
  done
  return 1
}

# split_chain FILE PREFIX: writes PREFIX1.pem, PREFIX2.pem, ... one certificate each;
# prints how many.
split_chain() {
  awk -v p="$2" '/-----BEGIN CERTIFICATE-----/ { n++; f = p n ".pem" } n { print > f }
                 END { print n + 0 }' "$1"
}

# start_ca LOG: starts `meshid ca serve --config ca.yaml` (listening on port 0
# or the one in ca.yaml) and sets CA_PID, GRPC and ADMIN from its
# "meshid CA serving ... grpc=127.0.0.1:P admin=127.0.0.1:P" line (bounded wait).
start_ca() {  # start_ca LOG [CONFIG [VAR=VALUE...]]: CONFIG defaults to ca.yaml; VARs go to its environment
  local log=$1 config=${2:-ca.yaml} i line re='grpc=127\.0\.0\.1:([0-9]+) admin=127\.0\.0\.1:([0-9]+)'
  shift $(($# < 2 ? $# : 2))
  start_server "$log" env "$@" "$MESHID" ca serve --config "$config"
  CA_PID=$LAST_SERVER_PID
  GRPC="" ADMIN=""
  for ((i = 0; i < 200; i++)); do  # up to 10 s
    line=$(grep -F "meshid CA serving" "$log" 2>/dev/null | head -n 1)
    if [[ $line =~ $re ]]; then
      GRPC=${BASH_REMATCH[1]} ADMIN=${BASH_REMATCH[2]}
      return 0
    fi
    kill -0 "$CA_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "the CA never printed its serving line; its log:"
  sed 's/^/  ca| /' "$log"
  return 1
}

# A server built with a sanitizer that reports, at exit above all (a leak, a
# use after free in teardown), still ends as stopped servers do: only its log
# tells, and the log goes with $TMP. So every server's log is read here, and
# each report counts as a failure.
_check_sanitizer_reports() {
  local log report='ERROR: (AddressSanitizer|LeakSanitizer)|: runtime error: |WARNING: ThreadSanitizer'
  local -A seen=()
  for log in "${SERVER_LOGS[@]}"; do
    [[ -f $log && -z ${seen[$log]:-} ]] || continue
    seen[$log]=1
    if grep -qE "$report" "$log"; then
      echo "FAIL: a sanitizer reported in the server log $(basename "$log")"
      grep -m 1 -A 30 -E "$report" "$log" | sed 's/^/  log| /'
      FAILED=$((FAILED + 1))
    fi
  done
}

finish() {
  FINISHED=1
  _stop_servers
  _check_sanitizer_reports
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]] || exit 1
  exit 0
}
