#!/usr/bin/env bash
# `meshid ca serve` driven by an independent client: tests/interop/istio_agent.js
# (node @grpc/grpc-js, written from PROTOCOLS.md §1) calls the CA as Istio's
# agent does, with Kubernetes-style tokens made by tests/interop/jwt_tool.js,
# CSRs made by openssl and by the harness in the exact shape Istio's agent (Go)
# makes them. Every certificate is checked with openssl; every denial for its
# exact gRPC code and for "nothing recorded" (/debug/ca issuances_recorded);
# the metrics against what the client saw (TESTING.md §1 and §3).
#   bash tests/integration/ca_server_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
INTEROP=$(cd "$(dirname "$0")/../interop" && pwd)
JWT="$INTEROP/jwt_tool.js"
AGENT="$INTEROP/istio_agent.js"
cd "$TMP" || exit 2
SERVER_LIFETIME=110  # the CA runs for most of the script (ctest's TIMEOUT is 120)
M=$MESHID
TD=example.org
ISS=https://kubernetes.default.svc
SLEEP=spiffe://$TD/ns/default/sa/sleep
ROOT=state/ca/root-cert.pem

if [[ ! -d "$INTEROP/node_modules/@grpc/grpc-js" ]]; then
  echo "FAIL: $INTEROP/node_modules is missing: run 'npm ci' in tests/interop"
  exit 1
fi

########## helpers ##########

issuances() {  # the CA's own count of recorded issuances (/debug/ca)
  local j re='"issuances_recorded": *([0-9]+)'
  j=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/debug/ca")
  if [[ $j =~ $re ]]; then echo "${BASH_REMATCH[1]}"; else echo "unreadable"; fi
}

http_status() {  # http_status PATH
  curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN$1"
}

lines() {  # lines TEXT: TEXT's lines, trimmed, joined with "|" (no forks)
  local l out=()
  while IFS= read -r l; do
    l=${l#"${l%%[! ]*}"}
    out+=("${l%"${l##*[! ]}"}")
  done <<<"$1"
  local IFS='|'
  echo "${out[*]}"
}

# Setup commands run side by side (at most $BG_MAX at once) to keep the script
# short on 2 cores:
#   bg LABEL OUTFILE CMD...   starts CMD (stdout to OUTFILE, "-" to drop it)
#   bg_wait                   waits for all of them; each LABEL passes when its CMD exited 0
BG_MAX=4
BG_PIDS=() BG_LABELS=() BG_OUT=() BG_CMDS=()
bg() {
  local label=$1 out=$2 n=${#BG_PIDS[@]} running=() p
  shift 2
  for p in "${BG_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && running+=("$p"); done
  while [[ ${#running[@]} -ge $BG_MAX ]]; do
    wait "${running[0]}" 2>/dev/null
    running=("${running[@]:1}")
  done
  [[ $out == - ]] && out=/dev/null
  (timeout -k 2 "$CMD_TIMEOUT" "$@" </dev/null >"$out" 2>"$TMP/.bg.$n.err"
   echo $? >"$TMP/.bg.$n.rc") &
  BG_PIDS+=("$!") BG_LABELS+=("$label") BG_OUT+=("$out") BG_CMDS+=("$(_quote "$@")")
}
bg_wait() {
  local i p
  for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for i in "${!BG_PIDS[@]}"; do
    RC=$(<"$TMP/.bg.$i.rc") OUT="" ERR=$(<"$TMP/.bg.$i.err")
    if [[ $RC -eq 0 ]]; then
      pass
    else
      eval "local cmd=(${BG_CMDS[$i]})"
      fail "${BG_LABELS[$i]}" "expected exit 0 (stdout in ${BG_OUT[$i]})" "${cmd[@]}"
    fi
    rm -f "$TMP/.bg.$i".*
  done
  BG_PIDS=() BG_LABELS=() BG_OUT=() BG_CMDS=()
}

# key NAME SPEC (rsa:BITS, ec = P-256, ec:CURVE or ed25519): NAME.key, in the background.
key() {
  case $2 in
    rsa:*) bg "setup: key $1" - openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2#rsa:}" -out "$1.key" ;;
    ec) bg "setup: key $1" - openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" ;;
    ec:*) bg "setup: key $1" - openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${2#ec:}" -out "$1.key" ;;
    ed25519) bg "setup: key $1" - openssl genpkey -algorithm ED25519 -out "$1.key" ;;
  esac
}

# csr NAME SAN: NAME.csr from NAME.key in Istio's shape (empty subject, the SAN
# critical; SAN is the whole subjectAltName value), in the background.
csr() {
  bg "setup: CSR $1" - openssl req -new -key "$1.key" -subj / -addext "subjectAltName=critical,$2" -out "$1.csr"
}

# token NAME ARGS...: NAME.jwt from jwt_tool.js, in the background (defaults:
# the RSA key of the JWKS, the right issuer and audience, ns default / sa
# sleep; ARGS override them or add options).
token() {
  local name=$1 k
  shift
  local -A a=([--key]=jwks-rsa.key [--kid]=rsa-1 [--iss]=$ISS [--aud]=istio-ca [--ns]=default [--sa]=sleep)
  local extra=() args=()
  while [[ $# -gt 0 ]]; do
    if [[ -v "a[$1]" ]]; then a[$1]=$2; else extra+=("$1" "$2"); fi
    shift 2
  done
  for k in "${!a[@]}"; do args+=("$k" "${a[$k]}"); done
  bg "setup: token $name" "$name.jwt" node "$JWT" sign "${args[@]}" "${extra[@]}"
}

# agent ARGS...: one call of the Istio-agent harness against the running CA.
agent() {
  run node "$AGENT" --addr "127.0.0.1:$GRPC" --root "$ROOT" "$@"
}

# Calls go to the harness in batches (one node process, a new connection and
# token read per call, in order), to keep the script short on 2 cores:
#   issue LABEL PREFIX SPIFFE_ID KEY ARGS...   queues a call that must get a certificate
#   issue_wait    runs the queue; for each call: the harness's own Istio-agent
#                 checks pass; the chain is written to PREFIX.1.pem ... PREFIX.N.pem
#                 (CHAIN_LEN[PREFIX] = N) and the answer to PREFIX.json; openssl
#                 verifies it (-x509_strict, the last element as the CA file);
#                 the leaf has the SVID profile with exactly the one URI SAN and
#                 KEY's public key. Then: exactly one issuance recorded per call.
#   deny LABEL CODE ARGS...   queues a call that must be refused with gRPC CODE
#                             (exactly; "8|3" for either)
#   deny_wait     runs the queue: each call gets exactly its code, and the CA
#                 records nothing over the whole batch.
# N_OK, N_DENIED, N_UNAUTH count what reached the CA, for the metrics checks.
N_OK=0 N_DENIED=0 N_UNAUTH=0
declare -A CHAIN_LEN=() VERIFY_OPTS=()  # VERIFY_OPTS[PREFIX]: extra openssl verify options
Q_LABEL=() Q_A=() Q_B=() Q_C=() Q_ARGS=()
_queue() {  # _queue LABEL A B C ARGS...
  [[ ${#Q_LABEL[@]} -eq 0 ]] && : >"$TMP/.batch"
  Q_LABEL+=("$1") Q_A+=("$2") Q_B+=("$3") Q_C+=("$4")
  shift 4
  Q_ARGS+=("$(_quote "$@")")
  jq -cn '$ARGS.positional' --args -- "$@" >>"$TMP/.batch"
}
_run_queue() {  # sets BEFORE, AFTER, RESULTS, BATCH_RC, BATCH_ERR
  BEFORE=$(issuances)
  timeout -k 2 60 node "$AGENT" --addr "127.0.0.1:$GRPC" --root "$ROOT" --batch "$TMP/.batch" \
    </dev/null >"$TMP/.batch.out" 2>"$TMP/.batch.err"
  BATCH_RC=$?
  BATCH_ERR=$(<"$TMP/.batch.err")
  RESULTS=()
  readarray -t RESULTS <"$TMP/.batch.out"
  AFTER=$(issuances)
}
issue() {
  local label=$1 prefix=$2 id=$3 key=$4
  shift 4
  _queue "$label" "$prefix" "$id" "$key" "$@"
}
deny() {
  local label=$1 code=$2
  shift 2
  _queue "$label" "$code" "" "" "$@"
}
issue_wait() {
  local i
  _run_queue
  for i in "${!Q_LABEL[@]}"; do
    OUT=${RESULTS[$i]:-} ERR=$BATCH_ERR RC=$BATCH_RC
    eval "local cmd=(${Q_ARGS[$i]})"
    _check_issued "${Q_LABEL[$i]}" "${Q_A[$i]}" "${Q_B[$i]}" "${Q_C[$i]}" "${cmd[@]}"
  done
  local want="$BEFORE + ${#Q_LABEL[@]}"
  [[ $BEFORE =~ ^[0-9]+$ ]] && want=$((want))
  expect_eq "${Q_LABEL[0]}$([[ ${#Q_LABEL[@]} -gt 1 ]] && echo " (and the rest of its batch)"): one issuance recorded per certificate" \
    "$want" "$AFTER"
  Q_LABEL=() Q_A=() Q_B=() Q_C=() Q_ARGS=()
}
_check_issued() {  # _check_issued LABEL PREFIX ID KEY CMD... (the answer in OUT)
  local name=$1 prefix=$2 id=$3 key=$4 i parts=() untrusted=() n
  shift 4
  CHAIN_LEN[$prefix]=0
  if [[ $OUT != '{"ok":true,'* ]]; then
    fail "$name: issued" "expected ok:true" node "$AGENT" "$@"
    return 1
  fi
  pass
  N_OK=$((N_OK + 1))
  printf '%s\n' "$OUT" >"$prefix.json"
  readarray -d '' -t parts < <(jq -j '.chain[] | (., "\u0000")' <<<"$OUT")
  n=${#parts[@]}
  CHAIN_LEN[$prefix]=$n
  : >"$prefix.untrusted.pem"
  for i in "${!parts[@]}"; do
    printf '%s\n' "${parts[$i]}" >"$prefix.$((i + 1)).pem"
    ((i > 0 && i < n - 1)) && printf '%s\n' "${parts[$i]}" >>"$prefix.untrusted.pem"
  done
  ((n > 2)) && untrusted=(-untrusted "$prefix.untrusted.pem")
  check_output_contains "$name: openssl verify -x509_strict (last element as CA file)" "$prefix.1.pem: OK" \
    openssl verify -x509_strict -purpose sslclient ${VERIFY_OPTS[$prefix]:-} -CAfile "$prefix.$n.pem" "${untrusted[@]}" "$prefix.1.pem"
  run openssl x509 -in "$prefix.1.pem" -noout -subject -ext subjectAltName,basicConstraints,extendedKeyUsage -pubkey
  local profile leafkey="-----BEGIN${OUT#*-----BEGIN}" san re='Subject Alternative Name: critical\|([^|]*)\|'
  profile="|$(lines "${OUT%%-----BEGIN*}")"
  [[ $profile =~ $re ]] && san=${BASH_REMATCH[1]}
  expect_eq "$name: leaf SAN is critical and exactly the one URI" "URI:$id" "${san:-no critical SAN}"
  expect_contains "$name: leaf subject is empty" "$profile" "|subject=|"
  expect_contains "$name: leaf is CA:FALSE (critical)" "$profile" "|X509v3 Basic Constraints: critical|CA:FALSE|"
  expect_contains "$name: leaf has serverAuth+clientAuth" "$profile" \
    "|X509v3 Extended Key Usage:|TLS Web Server Authentication, TLS Web Client Authentication|"
  run openssl pkey -in "$key" -pubout
  expect_eq "$name: leaf holds the CSR's key" "$OUT" "$leafkey"
  return 0
}
deny_wait() {
  local i re='"code":(-?[0-9]+)'
  _run_queue
  for i in "${!Q_LABEL[@]}"; do
    OUT=${RESULTS[$i]:-} ERR=$BATCH_ERR
    if [[ $OUT =~ $re ]]; then RC=${BASH_REMATCH[1]}; else RC=none; fi
    if [[ $OUT == '{"ok":false,'* ]] && _exit_matches "${Q_A[$i]}"; then
      pass
      # 14 is a refused handshake: the call never reaches the pipeline.
      case $RC in 3 | 7 | 16) N_DENIED=$((N_DENIED + 1)) ;; esac
      [[ $RC == 16 ]] && N_UNAUTH=$((N_UNAUTH + 1))
    else
      eval "local cmd=(${Q_ARGS[$i]})"
      RC="$BATCH_RC (batch), code $RC"
      fail "${Q_LABEL[$i]}: gRPC code ${Q_A[$i]}" "wrong answer" node "$AGENT" "${cmd[@]}"
    fi
    expect_eq "${Q_LABEL[$i]}: nothing recorded" "$BEFORE" "$AFTER"
  done
  Q_LABEL=() Q_A=() Q_B=() Q_C=() Q_ARGS=()
}

lifetime_of() {  # seconds between notBefore and notAfter
  local s e
  run openssl x509 -in "$1" -noout -startdate -enddate
  s=${OUT#notBefore=} s=${s%%$'\n'*} e=${OUT#*notAfter=}
  echo $(($(date -ud "$e" +%s) - $(date -ud "$s" +%s)))
}

sha256_of_cert() { openssl x509 -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }

########## setup: JWKS keys, config, CSRs, tokens ##########
VM=spiffe://$TD/vm/db-1
key jwks-rsa rsa:2048
key jwks-ec ec
key stranger rsa:2048  # not in the JWKS
for k in ec ec2 other dnssan vm vm2 vmother twouri nosan; do key "$k" ec; done
key rsa rsa:2048
key weak rsa:1024
key p384 ec:P-384
key k1 ec:secp256k1
key ed ed25519
bg "setup: a stranger CA with the same trust domain" - "$M" ca init --trust-domain "$TD" --out stranger-ca
bg_wait

bg "setup: JWKS" jwks.json node "$JWT" jwks --key jwks-rsa.key --kid rsa-1 --key jwks-ec.key --kid ec-1
for k in rsa ec ec2; do csr "$k" "URI:$SLEEP"; done
for k in weak p384 k1 ed; do csr "$k" "URI:$SLEEP"; done
csr other "URI:spiffe://$TD/ns/default/sa/other"
csr dnssan "URI:$SLEEP,DNS:sleep.default.svc.cluster.local"
csr vm "URI:$VM"
csr vm2 "URI:$VM"
csr vmother "URI:spiffe://$TD/vm/other"
csr twouri "URI:$SLEEP,URI:$SLEEP"
bg "setup: CSR nosan" - openssl req -new -key nosan.key -subj /CN=sleep -out nosan.csr
token rs256
token es256 --key jwks-ec.key --kid ec-1
token expired --exp-in -600
token wrongaud --aud kubernetes
token wrongiss --iss https://evil.example
token wrongsa --sa other
token notyet --nbf-in 3600
token unknownkey --key stranger.key --kid stranger
token unknownkid --kid rsa-2
token algnone --alg none
token hs256 --alg HS256-with-public-key
for k in rsa ec; do  # exactly as Istio's agent makes them: Subject O="" (Go), critical URI SAN
  bg "setup: Istio-agent-shaped $k CSR" - node "$AGENT" --make-csr "$SLEEP" --key-type "$k" \
    --csr-out "go-$k.csr" --key-out "go-$k.key"
done
bg "setup: a leaf from the stranger CA" - "$M" cert issue --ca stranger-ca --spiffe-id "$VM" --out stranger-leaf
bg_wait
expect_eq "setup: JWKS has an RS256 and an ES256 key" "rsa-1 RSA RS256 sig|ec-1 EC ES256 sig" \
  "$(jq -r '.keys[] | "\(.kid) \(.kty) \(.alg) \(.use)"' jwks.json 2>/dev/null | paste -sd'|')"
cat >ca.yaml <<EOF
trust_domain: $TD
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
state_dir: state
signer:
  type: selfsigned
authentication:
  kubernetes:
    jwks_file: jwks.json
    issuer: $ISS
    audiences: [istio-ca]
issuance:
  default_ttl: 1h
  max_ttl: 2h
EOF

if ! start_ca ca1.log; then
  fail "CA starts" "no serving line"
  finish
fi
pass
expect_true "CA root file exists" test -s "$ROOT"
expect_eq "/debug/ca: no issuances at start" 0 "$(issuances)"

########## the allocator's thread cache (src/cli/thread_cache.h) ##########
# The CA execs itself once with GLIBC_TUNABLES extended: still timeout's only
# child (same PID), the value in its environment, one line in its log.
# glibc parses GLIBC_TUNABLES in place: in /proc/PID/environ each ':' has become
# a NUL, so the pairs after the first read as entries of their own.
ca_env() {  # ca_env TIMEOUT_PID: the CA's GLIBC_TUNABLES as it was exec'd
  local child
  child=$(pgrep -P "$1" | head -n 1)
  tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null |
    awk '/^GLIBC_TUNABLES=/ { v = $0; on = 1; next }
         on && /^glibc\./ { v = v ":" $0; next }
         { on = 0 }
         END { print v == "" ? "(unset)" : v }'
}
expect_eq "thread cache: the CA runs with glibc.malloc.tcache_count=64" \
  "GLIBC_TUNABLES=glibc.malloc.tcache_count=64" "$(ca_env "$CA_PID")"
expect_eq "thread cache: the exec kept the process (one child of timeout)" 1 "$(pgrep -P "$CA_PID" | wc -l)"
expect_true "thread cache: logged once" test "$(grep -c 'malloc thread cache: 64 blocks of each size per thread' ca1.log)" -eq 1
other_ca() {  # other_ca NAME CONFIG_LINES [VAR=VALUE...]: a CA on state-NAME until it serves; prints its GLIBC_TUNABLES
  local name=$1 extra=$2 main=("$CA_PID" "$GRPC" "$ADMIN")
  shift 2
  { sed "s/^state_dir: state$/state_dir: state-$name/" ca.yaml; printf '%b' "$extra"; } >"ca-$name.yaml"
  start_ca "ca-$name.log" "ca-$name.yaml" "$@" >/dev/null
  ca_env "$CA_PID"
  stop_server "$CA_PID"
  CA_PID=${main[0]} GRPC=${main[1]} ADMIN=${main[2]}  # the main CA's, used below
}
expect_eq "thread cache: malloc_thread_cache 0 leaves the environment alone" "(unset)" \
  "$(other_ca cache0 'limits:\n  malloc_thread_cache: 0\n')"
expect_true "thread cache: 0 is logged as glibc's default" \
  grep -q "malloc thread cache: glibc's default (limits.malloc_thread_cache: 0)" ca-cache0.log
expect_eq "thread cache: a count in GLIBC_TUNABLES already stands" \
  "GLIBC_TUNABLES=glibc.malloc.tcache_count=10" "$(other_ca env10 '' GLIBC_TUNABLES=glibc.malloc.tcache_count=10)"
expect_true "thread cache: the environment's count is logged as not ours" \
  grep -q "glibc.malloc.tcache_count=10 as GLIBC_TUNABLES sets it; limits.malloc_thread_cache 64 not applied" ca-env10.log
expect_eq "thread cache: other tunables are kept and the count appended" \
  "GLIBC_TUNABLES=glibc.malloc.arena_max=4:glibc.malloc.tcache_count=64" \
  "$(other_ca arena '' GLIBC_TUNABLES=glibc.malloc.arena_max=4)"

########## Istio agent happy path ##########
for k in rsa ec; do
  check_output_contains "openssl accepts the Istio-agent-shaped $k CSR" "verify OK" \
    openssl req -in "go-$k.csr" -noout -verify
done
issue "istio RSA-2048 CSR + RS256 token" rsa-rs "$SLEEP" rsa.key --csr rsa.csr --token-file rs256.jwt
for k in rsa ec; do
  issue "istio agent-made $k CSR (Subject O=\"\")" "go-$k" "$SLEEP" "go-$k.key" --csr "go-$k.csr" --token-file rs256.jwt
done
issue "istio P-256 CSR + RS256 token" ec-rs "$SLEEP" ec.key --csr ec.csr --token-file rs256.jwt
issue "istio P-256 CSR + ES256 token" ec-es "$SLEEP" ec.key --csr ec.csr --token-file es256.jwt
issue "istio validity_duration 600" ec-600 "$SLEEP" ec2.key --csr ec2.csr --token-file es256.jwt --ttl 600
issue "istio validity_duration 0 = default_ttl 1h" ec-0 "$SLEEP" ec2.key --csr ec2.csr --token-file rs256.jwt --ttl 0
issue "istio validity_duration 100" ec-100 "$SLEEP" ec2.key --csr ec2.csr --token-file rs256.jwt --ttl 100
issue "istio validity_duration INT64_MAX" ec-huge "$SLEEP" ec2.key --csr ec2.csr --token-file rs256.jwt \
  --ttl 9223372036854775807
# A 1 s certificate, presented over mTLS once it has expired (below).
VERIFY_OPTS[short]=-no_check_time  # it may be gone by the time openssl looks
issue "istio validity_duration 1" short "$SLEEP" ec2.key --csr ec2.csr --token-file rs256.jwt --ttl 1
issue_wait
expect_eq "istio: chain is leaf, intermediate, root" 3 "${CHAIN_LEN[rsa-rs]}"
L=$(lifetime_of rsa-rs.1.pem)
expect_true "istio: validity_duration 86400 clamped to max_ttl 2h (+ backdate <= 120 s), got $L s" \
  test "$L" -ge 7200 -a "$L" -le 7320
L=$(lifetime_of ec-600.1.pem)
expect_true "istio: validity_duration 600 honoured (+ backdate <= 60 s), got $L s" test "$L" -ge 600 -a "$L" -le 660
L=$(lifetime_of ec-0.1.pem)
expect_true "istio: validity_duration 0 is default 1h, got $L s" test "$L" -ge 3600 -a "$L" -le 3720
L=$(lifetime_of ec-100.1.pem)
expect_eq "istio: validity_duration 100 + backdate min(60 s, lifetime / 10)" 110 "$L"
L=$(lifetime_of ec-huge.1.pem)
expect_true "istio: INT64_MAX clamped to 2h, got $L s" test "$L" -ge 7200 -a "$L" -le 7320
# Istio's agent makes P-384 keys when configured (ECC_CURVE=P384): a CA must
# sign them (PROTOCOLS.md §1). Its own batch, so a refusal stays one finding.
issue "istio P-384 CSR" p384 "$SLEEP" p384.key --csr p384.csr --token-file rs256.jwt
issue_wait
SHORT_NOT_AFTER=$(date -ud "$(openssl x509 -in short.1.pem -noout -enddate 2>/dev/null | cut -d= -f2)" +%s)
cat short.1.pem short.untrusted.pem >short-client.pem
expect_true "istio: leaf serials differ" test "$(openssl x509 -in rsa-rs.1.pem -noout -serial 2>&1)" != \
  "$(openssl x509 -in ec-rs.1.pem -noout -serial 2>&1)"

########## denials: exact code, nothing recorded ##########
deny "no token" 16 --csr ec.csr
deny "expired token" 16 --csr ec.csr --token-file expired.jwt
deny "wrong audience" 16 --csr ec.csr --token-file wrongaud.jwt
deny "wrong issuer" 16 --csr ec.csr --token-file wrongiss.jwt
deny "token not yet valid (nbf +1h)" 16 --csr ec.csr --token-file notyet.jwt
deny "token signed by a key not in the JWKS" 16 --csr ec.csr --token-file unknownkey.jwt
deny "token with an unknown kid" 16 --csr ec.csr --token-file unknownkid.jwt
deny "alg none" 16 --csr ec.csr --token-file algnone.jwt
deny "HS256 keyed with the RSA public key PEM" 16 --csr ec.csr --token-file hs256.jwt
deny "authorization: Basic" 16 --csr ec.csr --authorization "Basic c2xlZXA6c2xlZXA="
deny "bearer garbage" 16 --csr ec.csr --authorization "Bearer not.a.jwt"
# Tampered tokens: rs256's signature on another payload (sa other), the
# signature cut off, a 6 KiB segment of junk.
IFS=. read -r h p sig <rs256.jwt
IFS=. read -r _ p2 _ <wrongsa.jwt
printf '%s.%s.%s\n' "$h" "$p2" "$sig" >tampered.jwt
deny "token payload swapped under a valid signature" 16 --csr other.csr --token-file tampered.jwt
printf '%s.%s.\n' "$h" "$p" >nosig.jwt
deny "token with its signature cut off" 16 --csr ec.csr --token-file nosig.jwt
printf '%s.%s.%s\n' "$h" "$(head -c 4608 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d =)" "$sig" >junk.jwt
deny "token with a 6 KiB junk payload" 16 --csr ec.csr --token-file junk.jwt
deny "CSR for another service account" 7 --csr other.csr --token-file rs256.jwt
deny "CSR with an extra DNS SAN" 3 --csr dnssan.csr --token-file rs256.jwt
printf 'this is not a CSR\n' >garbage.csr
deny "garbage CSR" 3 --csr garbage.csr --token-file rs256.jwt
{
  echo "-----BEGIN CERTIFICATE REQUEST-----"
  head -c 300 /dev/urandom | base64 -w 64
  echo "-----END CERTIFICATE REQUEST-----"
} >random.csr
deny "PEM-wrapped random bytes" 3 --csr random.csr --token-file rs256.jwt
head -n 4 ec.csr >truncated.csr
deny "truncated CSR" 3 --csr truncated.csr --token-file rs256.jwt
# Flip the last byte of the DER (inside the signature): no proof of possession.
openssl req -in ec.csr -outform DER -out ec.der
{ head -c -1 ec.der; printf '%b' "\\x$(printf %02x $(($(tail -c 1 ec.der | od -An -tu1) ^ 1)))"; } >bad-sig.der
openssl req -inform DER -in bad-sig.der -out bad-sig.csr 2>/dev/null
deny "CSR with a bad signature" 3 --csr bad-sig.csr --token-file rs256.jwt
deny "RSA-1024 CSR" 3 --csr weak.csr --token-file rs256.jwt
deny "secp256k1 CSR" 3 --csr k1.csr --token-file rs256.jwt
deny "Ed25519 CSR (Envoy cannot load the key)" 3 --csr ed.csr --token-file rs256.jwt
deny "istio negative validity_duration" 3 --csr ec.csr --token-file rs256.jwt --ttl -1
deny "istio validity_duration INT64_MIN" 3 --csr ec.csr --token-file rs256.jwt --ttl -9223372036854775808
deny "meshid Sign ttl_seconds INT64_MAX" 3 --api meshid --csr ec.csr --token-file rs256.jwt --ttl 9223372036854775807
deny "CSR with the identity twice (two URI SANs)" 3 --csr twouri.csr --token-file rs256.jwt
deny "CSR with no SAN (CN only)" 3 --csr nosan.csr --token-file rs256.jwt
: >empty.csr
deny "empty CSR" 3 --csr empty.csr --token-file rs256.jwt
deny "meshid Sign ttl_seconds 86400 over max_ttl 2h" 3 --api meshid --csr ec.csr --token-file rs256.jwt --ttl 86400
deny "meshid Sign ttl_seconds 7201 over max_ttl 2h" 3 --api meshid --csr ec.csr --token-file rs256.jwt --ttl 7201
# The harness checks the serving certificate's name, as the agent does.
deny "serving certificate checked against the name asked for" 14 --csr ec.csr --token-file rs256.jwt \
  --server-name istiod.istio-system.svc
deny_wait
issue "istio same request (validity_duration 86400) is clamped and succeeds" ec-clamp "$SLEEP" ec.key \
  --csr ec.csr --token-file rs256.jwt --ttl 86400
issue "meshid Sign ttl_seconds 7200 (= max)" ec-max "$SLEEP" ec.key --api meshid --csr ec.csr \
  --token-file rs256.jwt --ttl 7200
issue "meshid Sign with a DER CSR (ca.proto: PEM or DER)" ec-der "$SLEEP" ec.key --api meshid --csr ec.der \
  --token-file rs256.jwt --ttl 600
issue_wait
L=$(lifetime_of ec-clamp.1.pem)
expect_true "istio: clamped to 2h, got $L s" test "$L" -ge 7200 -a "$L" -le 7320

########## join token (meshid API) ##########
run "$M" token create --config ca.yaml --spiffe-id "$VM" --ttl 10m
printf '%s\n' "$OUT" >join.tok
expect_true "token create prints a token" test "$RC" -eq 0 -a -n "$OUT"
issue "join token: meshid Sign" vm "$VM" vm.key --api meshid --csr vm.csr --token-file join.tok --ttl 3600
issue_wait
JOIN_OUT=$(<vm.json)
expect_eq "join token: spiffe_id" "$VM" "$(jq -r .spiffe_id <<<"$JOIN_OUT")"
deny "join token: second use" 16 --api meshid --csr vm2.csr --token-file join.tok --ttl 3600
deny_wait
run "$M" token create --config ca.yaml --spiffe-id "spiffe://$TD/vm/db-2" --ttl 10m
printf '%s\n' "$OUT" >join2.tok
deny "join token for vm/db-2, CSR for vm/db-1" 7 --api meshid --csr vm2.csr --token-file join2.tok
# Well-formed (mjt_ + 43 base64url characters) but never issued; then malformed.
printf 'mjt_%s\n' "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d =)" >join3.tok
deny "made-up join token" 16 --api meshid --csr vm2.csr --token-file join3.tok
printf 'mjt_short\n' >join4.tok
deny "malformed join token" 16 --api meshid --csr vm2.csr --token-file join4.tok
deny_wait

########## mTLS renewal (no token, the join-token certificate as client cert) ##########
cat vm.1.pem vm.untrusted.pem >vm-client.pem  # leaf + intermediates, no root
issue "mTLS renewal: same identity, new key" vm-renew "$VM" vm2.key \
  --csr vm2.csr --client-cert vm-client.pem --client-key vm.key
issue_wait
deny "mTLS: CSR for another identity" 7 --csr vmother.csr --client-cert vm-client.pem --client-key vm.key
deny "mTLS: client certificate from another root" 14 --csr vm2.csr \
  --client-cert stranger-leaf/cert-chain.pem --client-key stranger-leaf/key.pem
for ((i = 0; i < 40 && $(date +%s) <= SHORT_NOT_AFTER; i++)); do sleep 0.1; done  # usually long past
deny "mTLS: expired client certificate" 14 --csr ec2.csr --client-cert short-client.pem --client-key ec2.key
deny_wait

########## the CA's records (meshid ca issuances, read beside the running CA) ##########
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
run "$M" ca issuances --config ca.yaml --spiffe-id "$VM" --json
expect_eq "ca issuances: $VM has two certificates" 2 "$(jq length <<<"$OUT" 2>/dev/null)"
expect_eq "ca issuances: newest first, the mTLS renewal" "$(serial_of vm-renew.1.pem) mtls" \
  "$(jq -r '.[0].serial + " " + .[0].method' <<<"$OUT" 2>/dev/null)"
expect_eq "ca issuances: then the join-token certificate" "$(serial_of vm.1.pem) join_token $VM" \
  "$(jq -r '.[1].serial + " " + .[1].method + " " + .[1].caller' <<<"$OUT" 2>/dev/null)"
run "$M" ca issuances --config ca.yaml --serial "$(openssl x509 -in ec-clamp.1.pem -noout -serial)"
expect_contains "ca issuances --serial (pasted from openssl): the Istio certificate" "$OUT" \
  "$(serial_of ec-clamp.1.pem)"
expect_contains "ca issuances --serial: its API" "$OUT" "istio API"
check_fails_with "ca issuances --serial of a certificate never issued" 1 "no issuance with serial" \
  "$M" ca issuances --config ca.yaml --serial 0123abcd
run "$M" ca issuances --config ca.yaml --since 1h --limit 3 --json
expect_eq "ca issuances --limit 3" 3 "$(jq length <<<"$OUT" 2>/dev/null)"

########## GetTrustBundle ##########
agent --call bundle
expect_eq "GetTrustBundle: ok" true "$(jq -r .ok <<<"$OUT" 2>/dev/null)"
BUNDLE=$OUT
jq -r '.roots[0] // ""' <<<"$BUNDLE" >bundle-root.pem
expect_eq "GetTrustBundle: one root" 1 "$(jq -r '.roots | length' <<<"$BUNDLE")"
ROOT_SHA=$(sha256_of_cert "$ROOT")
expect_eq "GetTrustBundle: the root is state_dir/ca/root-cert.pem" "$ROOT_SHA" "$(sha256_of_cert bundle-root.pem)"
expect_eq "GetTrustBundle: sha256 is over the DER root" "$ROOT_SHA" "$(jq -r .sha256 <<<"$BUNDLE")"
expect_eq "GetTrustBundle: trust_domain" "$TD" "$(jq -r .trust_domain <<<"$BUNDLE")"
expect_eq "meshid Sign's bundle is the same" "$ROOT_SHA" "$(jq -r .bundle_sha256 <<<"$JOIN_OUT")"

########## admin port ##########
curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" >metrics.txt
STDIN=metrics.txt check "/metrics passes promtool check metrics" promtool check metrics
METRICS=$(<metrics.txt)
for name in meshid_ca_requests_total citadel_server_csr_count citadel_server_authentication_failure_count \
  citadel_server_csr_sign_err_count citadel_server_success_cert_issuance_count \
  citadel_server_root_cert_expiry_timestamp citadel_server_cert_chain_expiry_timestamp; do
  expect_contains "/metrics has $name" "$METRICS" "$name"
done
metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) printf "%.0f", s; else print "missing" }' metrics.txt; }
metric_label() { awk -v n="$1" -v l="$2" 'index($1, n "{") == 1 && index($1, l) { s += $2; f = 1 } END { if (f) printf "%.0f", s; else print "missing" }' metrics.txt; }
expect_eq "/debug/ca issuances_recorded = the harness's successes" "$N_OK" "$(issuances)"
# The store's files: /metrics and /debug/ca read them from disk; the database
# only grows here (no VACUUM), so what they said is at most what is there now.
DEBUG_DB=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/debug/ca" | jq -c .database)
DB_FILE=$(jq -r .path <<<"$DEBUG_DB")
expect_eq "/debug/ca database.path is state_dir's meshid-ca.db" "$(realpath state/meshid-ca.db)" "$(realpath "$DB_FILE" 2>/dev/null)"
DB_NOW=$(stat -c %s state/meshid-ca.db)
check "/debug/ca database.bytes: >0 and at most the file's size now ($DB_NOW)" \
  test "$(jq -r '.bytes' <<<"$DEBUG_DB")" -gt 0 -a "$(jq -r '.bytes' <<<"$DEBUG_DB")" -le "$DB_NOW"
check "/debug/ca database.wal_bytes > 0 (rows went through the WAL)" test "$(jq -r .wal_bytes <<<"$DEBUG_DB")" -gt 0
check "meshid_ca_store_database_bytes: >0 and at most the file's size now" \
  test "$(metric meshid_ca_store_database_bytes)" -gt 0 -a "$(metric meshid_ca_store_database_bytes)" -le "$DB_NOW"
check "meshid_ca_store_wal_bytes > 0" test "$(metric meshid_ca_store_wal_bytes)" -gt 0
expect_eq "citadel_server_success_cert_issuance_count = successes" "$N_OK" "$(metric citadel_server_success_cert_issuance_count)"
expect_eq "citadel_server_csr_count = calls that reached the CA" "$((N_OK + N_DENIED))" "$(metric citadel_server_csr_count)"
expect_eq "citadel_server_authentication_failure_count = UNAUTHENTICATED answers" "$N_UNAUTH" \
  "$(metric citadel_server_authentication_failure_count)"
expect_eq "meshid_ca_requests_total{result=ok} = successes" "$N_OK" "$(metric_label meshid_ca_requests_total 'result="ok"')"
expect_eq "meshid_ca_requests_total{result=denied} = denials" "$N_DENIED" \
  "$(metric_label meshid_ca_requests_total 'result="denied"')"
not_after() { date -ud "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
expect_eq "citadel_server_root_cert_expiry_timestamp = root notAfter" "$(not_after "$ROOT")" \
  "$(metric citadel_server_root_cert_expiry_timestamp)"
expect_eq "citadel_server_cert_chain_expiry_timestamp = signing certificate notAfter" \
  "$(not_after state/ca/ca-cert.pem)" "$(metric citadel_server_cert_chain_expiry_timestamp)"
expect_eq "/healthz 200" 200 "$(http_status /healthz)"
expect_eq "/readyz 200" 200 "$(http_status /readyz)"

########## hostile input on the wire ##########
{
  echo "-----BEGIN CERTIFICATE REQUEST-----"
  head -c 204800 /dev/zero | tr '\0' 'A' | fold -w 64
  echo "-----END CERTIFICATE REQUEST-----"
} >huge.csr
expect_true "huge.csr is over 200 KiB" test "$(stat -c %s huge.csr)" -gt 204800
deny "200 KiB CSR (limit 64 KiB)" "8|3" --csr huge.csr --token-file rs256.jwt
deny_wait
issue "still serves after the oversized request" ec-after "$SLEEP" ec.key --csr ec.csr --token-file rs256.jwt
issue_wait

########## restart on the same state_dir ##########
ISSUED=$(issuances)
kill -TERM "$CA_PID"
for ((i = 0; i < 100; i++)); do  # up to 5 s
  kill -0 "$CA_PID" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$CA_PID" 2>/dev/null; then
  fail "SIGTERM: exits within 5 s" "still running after 5 s"
  kill -KILL "$CA_PID" 2>/dev/null
else
  pass
fi
wait "$CA_PID"
expect_eq "SIGTERM: exit status 0" 0 "$?"
keep=()
for p in "${SERVER_PIDS[@]}"; do [[ $p != "$CA_PID" ]] && keep+=("$p"); done
SERVER_PIDS=("${keep[@]}")
expect_true "SIGTERM: logs 'stopped'" grep -qE ' stopped$' ca1.log

if start_ca ca2.log; then
  pass
  agent --call bundle
  jq -r '.roots[0] // ""' <<<"$OUT" >bundle-root2.pem
  expect_eq "restart: same root (sha256)" "$ROOT_SHA" "$(sha256_of_cert bundle-root2.pem)"
  expect_eq "restart: bundle sha256 unchanged" "$ROOT_SHA" "$(jq -r .sha256 <<<"$OUT")"
  expect_eq "restart: issuances still recorded" "$ISSUED" "$(issuances)"
  issue "restart: new issuance (RSA CSR, RS256 token)" rsa-after "$SLEEP" rsa.key --csr rsa.csr --token-file rs256.jwt
  issue_wait
  expect_eq "restart: new leaf chains to the same root" "$ROOT_SHA" "$(sha256_of_cert "rsa-after.${CHAIN_LEN[rsa-after]}.pem")"
  deny "restart: used join token stays used" 16 --api meshid --csr vm2.csr --token-file join.tok
  deny_wait
else
  fail "restart: CA starts again on the same state_dir" "no serving line"
fi

# The log: one "CSR signed" line per issuance with the ID, serial and
# notAfter; never a key, a CSR body, a token or the JWT itself.
logs=$(cat ca1.log ca2.log 2>/dev/null)
signed_lines=$(grep -c 'CSR signed spiffe_id=spiffe://example.org/' <<<"$logs" || true)
expect_true "log: a 'CSR signed' line per recorded issuance ($signed_lines lines, $(issuances) recorded)" \
  test "$signed_lines" -eq "$(issuances)"
expect_true "log: 'CSR signed' lines carry serial and not_after" \
  grep -qE 'CSR signed spiffe_id=spiffe://example.org/ns/default/sa/sleep serial=[0-9a-f]{32} not_after=20[0-9-]+T' ca1.log
expect_true "log: no PEM block of any kind" bash -c "! grep -q -- '-----BEGIN' ca1.log ca2.log"
for tok in join.tok join2.tok rs256.jwt; do
  [[ -s $tok ]] || continue
  secret=$(head -c 40 "$tok" | tail -c 30)
  expect_true "log: never contains the bearer token from $tok" bash -c "! grep -qF -- '$secret' ca1.log ca2.log"
done

finish
