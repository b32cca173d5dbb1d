#!/usr/bin/env bash
# The meshid CLI's behaviour, end to end: files, modes, exit codes (0 ok,
# 1 failure or negative verdict, 2 usage), JSON output, verdicts with reasons,
# and hostile input.
#   bash tests/integration/cli_test.sh build/meshid
# shellcheck disable=SC2016  # jq programs use $variables of their own
source "$(dirname "$0")/lib.sh" "$@"
cd "$TMP" || exit 2
M=$MESHID
TD=example.org
ID=spiffe://$TD/ns/default/sa/web

mode_of() { stat -c %a "$1" 2>/dev/null; }
sha_of() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
epoch_of() {  # epoch_of FILE start|end
  date -u -d "$(openssl x509 -in "$1" -noout -"$2"date | cut -d= -f2)" +%s
}
rfc3339_of() {  # openssl's idea of notBefore/notAfter, in meshid's format
  date -u -d "$(openssl x509 -in "$1" -noout -"$2"date | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ
}
in_seconds() { date -u -d "@$(($(date +%s) + $1))" +%Y-%m-%dT%H:%M:%SZ; }

########## ca init ##########
check_output_contains "ca init: creates a CA" "created a CA for trust domain $TD" \
  "$M" ca init --trust-domain "$TD" --out ca
for f in ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem root/root-key.pem; do
  expect_true "ca init: writes $f" test -s "ca/$f"
done
expect_eq "ca init: ca-key.pem is 0600" 600 "$(mode_of ca/ca-key.pem)"
expect_eq "ca init: root/root-key.pem is 0600" 600 "$(mode_of ca/root/root-key.pem)"
expect_eq "ca init: ca-cert.pem is world-readable (0644)" 644 "$(mode_of ca/ca-cert.pem)"
expect_eq "ca init: cert-chain.pem holds intermediate + root" 2 \
  "$(grep -c 'BEGIN CERTIFICATE' ca/cert-chain.pem)"
expect_eq "ca init: root-cert.pem holds one root" 1 "$(grep -c 'BEGIN CERTIFICATE' ca/root-cert.pem)"
check "ca init: the intermediate verifies against root-cert.pem (openssl)" \
  openssl verify -x509_strict -CAfile ca/root-cert.pem ca/ca-cert.pem
check "ca init: the intermediate's key is ca-key.pem (openssl)" \
  test "$(openssl x509 -in ca/ca-cert.pem -noout -pubkey)" == "$(openssl pkey -in ca/ca-key.pem -pubout)"
check_output_contains "ca init: root key is outside cacerts and listed" "root/root-key.pem (0600)" \
  "$M" ca init --trust-domain "$TD" --out ca-text

# A CA that expires in 5 s, made now and judged at the end of the script.
check "ca init: a CA whose intermediate lives 5 s" \
  "$M" ca init --trust-domain "$TD" --out ca-expiring --intermediate-ttl 5s
check "cert issue: from the short-lived CA before it expires" \
  "$M" cert issue --ca ca-expiring --spiffe-id "spiffe://$TD/short" --out web-expiring --ttl 1h
expect_eq "cert issue: the leaf ends with its CA" \
  "$(epoch_of ca-expiring/ca-cert.pem end)" "$(epoch_of web-expiring/cert-chain.pem end)"

# Refuses to overwrite without --force, and leaves the files alone.
before=$(sha_of ca/ca-cert.pem)
before_root=$(sha_of ca/root/root-key.pem)
check_fails_with "ca init: refuses to overwrite without --force" 1 "--force" \
  "$M" ca init --trust-domain "$TD" --out ca
expect_eq "ca init: refused run left ca-cert.pem unchanged" "$before" "$(sha_of ca/ca-cert.pem)"
expect_eq "ca init: refused run left the root key unchanged" "$before_root" "$(sha_of ca/root/root-key.pem)"
mkdir -p onlycacerts && cp ca/ca-cert.pem ca/ca-key.pem ca/cert-chain.pem ca/root-cert.pem onlycacerts/
check_fails_with "ca init: refuses to overwrite cacerts files (no root key there) without --force" 1 "--force" \
  "$M" ca init --trust-domain "$TD" --out onlycacerts
check "ca init: a CA to replace" \
  "$M" ca init --trust-domain "$TD" --out ca-forced
cp -r ca-forced ca-forced.orig
check "ca init --force: succeeds over existing files" \
  "$M" ca init --trust-domain "$TD" --out ca-forced --force
expect_true "ca init --force: the intermediate was replaced" \
  test "$(sha_of ca-forced/ca-cert.pem)" != "$(sha_of ca-forced.orig/ca-cert.pem)"
expect_true "ca init --force: the root key was replaced" \
  test "$(sha_of ca-forced/root/root-key.pem)" != "$(sha_of ca-forced.orig/root/root-key.pem)"
expect_eq "ca init --force: key stays 0600" 600 "$(mode_of ca-forced/ca-key.pem)"

# --root-key-out must not clobber other files without --force.
mkdir -p keyvault && echo "precious, not a certificate" >keyvault/root-cert.pem
run "$M" ca init --trust-domain "$TD" --out ca-rko --root-key-out keyvault/root-key.pem
expect_eq "ca init --root-key-out: exit 0" 0 "$RC"
expect_eq "ca init --root-key-out: root key 0600 where asked" 600 "$(mode_of keyvault/root-key.pem)"
expect_eq "ca init --root-key-out DIR/x silently overwrites DIR/root-cert.pem without --force" \
  "precious, not a certificate" "$(head -n 1 keyvault/root-cert.pem)"

# A root key that cannot be written must leave no CA behind: cacerts whose root key
# was never saved can never get a sibling intermediate, and a rerun needs --force.
: >not-a-dir
check_fails_with "ca init: an unwritable --root-key-out is an error" 1 "not-a-dir" \
  "$M" ca init --trust-domain "$TD" --out ca-orphan --root-key-out not-a-dir/root-key.pem
expect_true "ca init writes the cacerts files before the root key and leaves them when the root key cannot be written" \
  test ! -e ca-orphan/ca-cert.pem

# Key types.
declare -A KEYDESC=([ec-p256]="ECDSA P-256" [ec-p384]="ECDSA P-384" [rsa-2048]="RSA 2048" [ed25519]="Ed25519")
for kt in ec-p384 rsa-2048 ed25519; do
  check "ca init --key-type $kt" "$M" ca init --trust-domain "$TD" --out "ca-$kt" --key-type "$kt" --json
  echo "$OUT" >"ca-$kt.json"
  check "ca init --key-type $kt: intermediate key is ${KEYDESC[$kt]}" \
    jq -e --arg k "${KEYDESC[$kt]}" '.intermediate.key == $k and .roots[0].key == $k' "ca-$kt.json"
  check "ca init --key-type $kt: openssl verifies the intermediate" \
    openssl verify -x509_strict -CAfile "ca-$kt/root-cert.pem" "ca-$kt/ca-cert.pem"
  expect_eq "ca init --key-type $kt: key file 0600" 600 "$(mode_of "ca-$kt/ca-key.pem")"
done
check_fails_with "ca init --key-type dsa: clear error naming the bad type" "1|2" 'unknown key type "dsa"' \
  "$M" ca init --trust-domain "$TD" --out ca-dsa --key-type dsa
expect_contains "ca init --key-type dsa: names the accepted types" "$OUT$ERR" "ec-p256"
expect_true "ca init --key-type dsa: wrote nothing" test ! -e ca-dsa/ca-cert.pem
check_fails_with "ca init: invalid trust domain refused" 1 "" \
  "$M" ca init --trust-domain "Example.ORG/x" --out ca-badtd
expect_true "ca init: invalid trust domain wrote nothing" test ! -e ca-badtd
check_fails_with "ca init: bad --root-ttl refused" 1 "invalid duration" \
  "$M" ca init --trust-domain "$TD" --out ca-badttl --root-ttl 10x

# --json.
check "ca init --json" "$M" ca init --trust-domain "$TD" --out ca-json --json
echo "$OUT" >ca-init.json
check "ca init --json: parses as JSON" jq -e . ca-init.json
check "ca init --json: directory and layout" \
  jq -e '.directory == "ca-json" and .layout == "istio-cacerts"' ca-init.json
check "ca init --json: files" \
  jq -e '(.files | sort) == (["ca-cert.pem","ca-key.pem","cert-chain.pem","root-cert.pem"] | sort)' ca-init.json
check "ca init --json: intermediate fields" \
  jq -e '.intermediate | .role == "intermediate CA" and .is_ca and .spiffe_id == "spiffe://example.org"
         and .path_length == 0 and (.key_usage | index("keyCertSign")) != null
         and (.serial | test("^[0-9a-f]{16,}$")) and (.sha256_fingerprint | length) == 95' ca-init.json
check "ca init --json: root fields" \
  jq -e '.roots | length == 1 and .[0].role == "root CA" and .[0].self_signed and .[0].is_ca' ca-init.json
check "ca init --json: root_key path" jq -e '.root_key == "ca-json/root/root-key.pem"' ca-init.json
check_fails_with "ca init --json: an error is JSON too" 1 "ALREADY_EXISTS" \
  "$M" ca init --trust-domain "$TD" --out ca-json --json
check "ca init --json: the error parses" jq -e '.error.code == "ALREADY_EXISTS" and (.error.message | contains("--force"))' <<<"$OUT"

# Intermediate TTL is clamped to the root's lifetime.
check "ca init: --intermediate-ttl longer than the root" \
  "$M" ca init --trust-domain "$TD" --out ca-short --root-ttl 10d --intermediate-ttl 20d
expect_eq "ca init: intermediate notAfter clamped to the root's" \
  "$(epoch_of ca-short/root-cert.pem end)" "$(epoch_of ca-short/ca-cert.pem end)"

########## ca intermediate ##########
check_output_contains "ca intermediate: second intermediate under the same root" \
  "created an intermediate CA for trust domain $TD" \
  "$M" ca intermediate --root-cert ca/root/root-cert.pem --root-key ca/root/root-key.pem --out ca-b
for f in ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem; do
  expect_true "ca intermediate: writes $f" test -s "ca-b/$f"
done
expect_eq "ca intermediate: ca-key.pem is 0600" 600 "$(mode_of ca-b/ca-key.pem)"
expect_eq "ca intermediate: same root-cert.pem as the first" "$(sha_of ca/root-cert.pem)" "$(sha_of ca-b/root-cert.pem)"
expect_true "ca intermediate: a different intermediate" test "$(sha_of ca/ca-cert.pem)" != "$(sha_of ca-b/ca-cert.pem)"
check "ca intermediate: openssl verifies it against the root" \
  openssl verify -x509_strict -CAfile ca/root-cert.pem ca-b/ca-cert.pem
check_fails_with "ca intermediate: refuses to overwrite without --force" 1 "--force" \
  "$M" ca intermediate --root-cert ca/root/root-cert.pem --root-key ca/root/root-key.pem --out ca-b
check "ca intermediate --force" \
  "$M" ca intermediate --root-cert ca/root/root-cert.pem --root-key ca/root/root-key.pem --out ca-b --force
check "ca intermediate --json --ttl clamped" \
  "$M" ca intermediate --root-cert ca-short/root-cert.pem --root-key ca-short/root/root-key.pem \
  --out ca-short-b --ttl 100d --json
check "ca intermediate --json: parses, trust domain from the root's URI SAN" \
  jq -e '.intermediate.spiffe_id == "spiffe://example.org" and .layout == "istio-cacerts"' <<<"$OUT"
expect_eq "ca intermediate: --ttl clamped to the root's notAfter" \
  "$(epoch_of ca-short/root-cert.pem end)" "$(epoch_of ca-short-b/ca-cert.pem end)"
check_fails_with "ca intermediate: root key that does not match the root" 1 "" \
  "$M" ca intermediate --root-cert ca/root/root-cert.pem --root-key ca-text/root/root-key.pem --out ca-mismatch
expect_true "ca intermediate: mismatched root key wrote nothing" test ! -e ca-mismatch
check_fails_with "ca intermediate: an intermediate (pathlen 0) cannot sign a CA" 1 "path length 0" \
  "$M" ca intermediate --root-cert ca/ca-cert.pem --root-key ca/ca-key.pem --out ca-under-int

# Three levels: an intermediate that may sign one more CA.
check "ca intermediate --path-length 1" \
  "$M" ca intermediate --root-cert ca/root/root-cert.pem --root-key ca/root/root-key.pem --out ca-l1 --path-length 1
check_output_contains "ca intermediate: signed by an intermediate (bundle up to the root)" "created an intermediate CA" \
  "$M" ca intermediate --root-cert ca-l1/cert-chain.pem --root-key ca-l1/ca-key.pem --out ca-l2
expect_eq "ca intermediate: level-2 cert-chain.pem is both intermediates + root" 3 "$(grep -c 'BEGIN CERTIFICATE' ca-l2/cert-chain.pem)"
check_fails_with "ca intermediate: signer's file without a root is refused" 1 "no self-signed root" \
  "$M" ca intermediate --root-cert ca-l1/ca-cert.pem --root-key ca-l1/ca-key.pem --out ca-l2-noroot
check_output_contains "cert issue: from the level-2 intermediate" "leaf + 2 CA certificate(s)" \
  "$M" cert issue --ca ca-l2 --spiffe-id "$ID-deep" --out web-deep
check_output_contains "cert verify: through 2 intermediates" "through 2 intermediate(s)" \
  "$M" cert verify web-deep/cert-chain.pem --roots ca/root-cert.pem --key web-deep/key.pem
split_chain web-deep/cert-chain.pem deep >/dev/null && cat deep2.pem deep3.pem >deep-untrusted.pem
check "openssl verifies the three-level chain" \
  openssl verify -x509_strict -purpose sslclient -CAfile ca/root-cert.pem -untrusted deep-untrusted.pem deep1.pem
check_fails_with "ca intermediate: the level-2 CA (path length 0) cannot sign a CA" 1 "path length 0" \
  "$M" ca intermediate --root-cert ca-l2/cert-chain.pem --root-key ca-l2/ca-key.pem --out ca-l3

########## cert issue ##########
check_output_contains "cert issue: issues an SVID" "issued $ID" \
  "$M" cert issue --ca ca --spiffe-id "$ID" --out web
for f in cert-chain.pem key.pem root-cert.pem; do
  expect_true "cert issue: writes $f" test -s "web/$f"
done
expect_eq "cert issue: key.pem is 0600" 600 "$(mode_of web/key.pem)"
expect_eq "cert issue: cert-chain.pem is leaf + intermediate" 2 "$(grep -c 'BEGIN CERTIFICATE' web/cert-chain.pem)"
expect_eq "cert issue: root-cert.pem is the CA's root" "$(sha_of ca/root-cert.pem)" "$(sha_of web/root-cert.pem)"
check_output_contains "cert issue: the SVID verifies with its key" "OK: $ID" \
  "$M" cert verify web/cert-chain.pem --roots web/root-cert.pem --spiffe-id "$ID" --key web/key.pem
before=$(sha_of web/cert-chain.pem)
check_fails_with "cert issue: refuses to overwrite without --force" 1 "--force" \
  "$M" cert issue --ca ca --spiffe-id "$ID" --out web
expect_eq "cert issue: refused run left the chain alone" "$before" "$(sha_of web/cert-chain.pem)"
check "cert issue --force" "$M" cert issue --ca ca --spiffe-id "$ID" --out web --force
expect_true "cert issue --force: a new chain" test "$(sha_of web/cert-chain.pem)" != "$before"
check "cert issue --force: new chain and new key still match" \
  "$M" cert verify web/cert-chain.pem --roots web/root-cert.pem --key web/key.pem

for kt in ec-p384 rsa-2048; do
  check "cert issue --key-type $kt" "$M" cert issue --ca ca --spiffe-id "$ID-$kt" --out "web-$kt" --key-type "$kt" --json
  check "cert issue --key-type $kt: key is ${KEYDESC[$kt]}" \
    jq -e --arg k "${KEYDESC[$kt]}" '.certificate.key == $k' <<<"$OUT"
  check "cert issue --key-type $kt: chain and key verify" \
    "$M" cert verify "web-$kt/cert-chain.pem" --roots "web-$kt/root-cert.pem" --key "web-$kt/key.pem"
done
check_output_contains "cert issue --key-type ed25519 warns about Envoy" "Envoy" \
  "$M" cert issue --ca ca --spiffe-id "$ID-ed" --out web-ed --key-type ed25519

check "cert issue --json" "$M" cert issue --ca ca --spiffe-id "$ID-json" --out web-json --json
check "cert issue --json: fields" \
  jq -e --arg id "$ID-json" '.certificate.spiffe_id == $id and .certificate.role == "leaf"
      and .certificate.is_ca == false and .certificate.uri_sans == [$id]
      and (.certificate.ext_key_usage | sort) == ["clientAuth","serverAuth"]
      and .files == {"chain":"cert-chain.pem","key":"key.pem","bundle":"root-cert.pem"}' <<<"$OUT"

# --ttl: notAfter - notBefore = ttl + backdate, backdate = min(60 s, ttl / 10).
check "cert issue --ttl 2h" "$M" cert issue --ca ca --spiffe-id "$ID-2h" --out web-2h --ttl 2h
span=$(($(epoch_of web-2h/cert-chain.pem end) - $(epoch_of web-2h/cert-chain.pem start)))
expect_eq "cert issue --ttl 2h: notAfter - notBefore = 2h + 60s" 7260 "$span"
now=$(date +%s)
expect_true "cert issue --ttl 2h: notAfter is about now + 2h" \
  test $(($(epoch_of web-2h/cert-chain.pem end) - now - 7200)) -le 2 -a \
  $(($(epoch_of web-2h/cert-chain.pem end) - now - 7200)) -ge -10
check "cert issue --ttl 5m" "$M" cert issue --ca ca --spiffe-id "$ID-5m" --out web-5m --ttl 5m
span=$(($(epoch_of web-5m/cert-chain.pem end) - $(epoch_of web-5m/cert-chain.pem start)))
expect_eq "cert issue --ttl 5m: notAfter - notBefore = 300s + 30s" 330 "$span"
check "cert issue --ttl 1000d (longer than the CA)" "$M" cert issue --ca ca --spiffe-id "$ID-long" --out web-long --ttl 1000d
expect_eq "cert issue --ttl 1000d: clamped to the intermediate's notAfter" \
  "$(epoch_of ca/ca-cert.pem end)" "$(epoch_of web-long/cert-chain.pem end)"
check_fails_with "cert issue --ttl 10x refused" 1 "invalid duration" \
  "$M" cert issue --ca ca --spiffe-id "$ID" --out web-badttl --ttl 10x
check_fails_with "cert issue --ttl 0s refused" 1 "positive" \
  "$M" cert issue --ca ca --spiffe-id "$ID" --out web-zerottl --ttl 0s
expect_true "cert issue: bad ttl wrote nothing" test ! -e web-badttl -a ! -e web-zerottl

# Identity checks.
check_fails_with "cert issue: another trust domain refused" 1 "trust domain" \
  "$M" cert issue --ca ca --spiffe-id spiffe://other.org/ns/x --out web-other
expect_true "cert issue: refused trust domain wrote nothing" test ! -e web-other
check_fails_with "cert issue: SPIFFE ID without a path refused" 1 "no path" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD" --out web-nopath
# (The SPIFFE ID grammar is unit-tested; here a few show the CLI refuses cleanly.)
for bad in "http://$TD/x" "spiffe://$TD/a/../b" "spiffe://Example.org/x" "spiffe://$TD:8080/x" "spiffe://$TD/x?q=1"; do
  check_exit "cert issue: invalid SPIFFE ID '$bad' refused" 1 \
    "$M" cert issue --ca ca --spiffe-id "$bad" --out web-badid
done
expect_true "cert issue: invalid SPIFFE IDs wrote nothing" test ! -e web-badid
check "cert issue from the second intermediate" "$M" cert issue --ca ca-b --spiffe-id "$ID-b" --out web-b
check_output_contains "cert issue: SVIDs of both intermediates verify against the one root (a)" "OK: $ID" \
  "$M" cert verify web/cert-chain.pem --roots ca/root/root-cert.pem
check_output_contains "cert issue: SVIDs of both intermediates verify against the one root (b)" "OK: $ID-b" \
  "$M" cert verify web-b/cert-chain.pem --roots ca/root/root-cert.pem
openssl x509 -in web-b/cert-chain.pem -out web-b-leaf.pem
check_fails_with "cert verify: leaf of intermediate B with intermediate A's certificate" 1 "FAILED" \
  "$M" cert verify web-b-leaf.pem --chain ca/ca-cert.pem --roots ca/root-cert.pem

########## CA directories in other shapes ##########
# Kubernetes mounts a secret through ..data symlinks.
mkdir -p k8s/..2026_01_01_00_00_00.1 && cp ca/ca-cert.pem ca/ca-key.pem ca/cert-chain.pem ca/root-cert.pem k8s/..2026_01_01_00_00_00.1/
ln -s ..2026_01_01_00_00_00.1 k8s/..data
for f in ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem; do ln -s "..data/$f" "k8s/$f"; done
check_output_contains "cert issue: CA directory mounted through ..data symlinks" "issued $ID-k8s" \
  "$M" cert issue --ca k8s --spiffe-id "$ID-k8s" --out web-k8s
# cert-manager's layout: tls.crt (+ chain), tls.key, ca.crt.
mkdir -p cm && cp ca/ca-cert.pem cm/tls.crt && cp ca/ca-key.pem cm/tls.key && cp ca/root-cert.pem cm/ca.crt
check_output_contains "cert issue: cert-manager layout (tls.crt, tls.key, ca.crt)" "issued $ID-cm" \
  "$M" cert issue --ca cm --spiffe-id "$ID-cm" --out web-cm
check_output_contains "cert issue: cert-manager layout SVID verifies" "OK: $ID-cm" \
  "$M" cert verify web-cm/cert-chain.pem --roots cm/ca.crt --key web-cm/key.pem
# During a root rotation root-cert.pem holds two roots; the bundle is passed on whole.
mkdir -p rotating && cp ca/ca-cert.pem ca/ca-key.pem ca/cert-chain.pem rotating/ &&
  cat ca/root-cert.pem ca-text/root-cert.pem >rotating/root-cert.pem
check_output_contains "cert issue: root-cert.pem with two roots" "trust bundle (2 root(s))" \
  "$M" cert issue --ca rotating --spiffe-id "$ID-rot" --out web-rot
expect_eq "cert issue: both roots in the issued bundle" 2 "$(grep -c 'BEGIN CERTIFICATE' web-rot/root-cert.pem)"
check_output_contains "cert verify: against a two-root bundle" "OK: $ID-rot" \
  "$M" cert verify web-rot/cert-chain.pem --roots web-rot/root-cert.pem

########## encrypted root keys (MESHID_KEY_PASSPHRASE) ##########
check "ca init with MESHID_KEY_PASSPHRASE" env MESHID_KEY_PASSPHRASE=s3cret "$M" ca init --trust-domain "$TD" --out ca-pp
expect_eq "ca init: the root key is encrypted" "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 ca-pp/root/root-key.pem)"
expect_eq "ca init: ca-key.pem stays plain (Istio reads it)" "-----BEGIN PRIVATE KEY-----" "$(head -n 1 ca-pp/ca-key.pem)"
check_fails_with "ca intermediate: encrypted root key without a passphrase" 1 "passphrase is required" \
  env -u MESHID_KEY_PASSPHRASE "$M" ca intermediate --root-cert ca-pp/root-cert.pem --root-key ca-pp/root/root-key.pem --out ca-pp-b
check_fails_with "ca intermediate: encrypted root key, wrong passphrase" 1 "wrong passphrase" \
  env MESHID_KEY_PASSPHRASE=wrong "$M" ca intermediate --root-cert ca-pp/root-cert.pem --root-key ca-pp/root/root-key.pem --out ca-pp-b
expect_true "ca intermediate: nothing written without the right passphrase" test ! -e ca-pp-b
check "ca intermediate: encrypted root key, right passphrase" \
  env MESHID_KEY_PASSPHRASE=s3cret "$M" ca intermediate --root-cert ca-pp/root-cert.pem --root-key ca-pp/root/root-key.pem --out ca-pp-b

########## cert inspect ##########
cat web/cert-chain.pem ca/root-cert.pem >bundle.pem
n=$(split_chain bundle.pem part)
expect_eq "bundle for inspect has 3 certificates" 3 "$n"
check "cert inspect: a three-certificate bundle" "$M" cert inspect bundle.pem
inspect_text=$OUT
roles=("leaf" "intermediate CA" "root CA")
ids=("$ID" "spiffe://$TD" "spiffe://$TD")
keys=("ECDSA P-256" "ECDSA P-256" "ECDSA P-256")
for i in 1 2 3; do
  block=$(awk -v h="certificate $i of 3: ${roles[$((i - 1))]}" '$0 == h {on=1; print; next} /^certificate / {on=0} on' <<<"$inspect_text")
  expect_true "cert inspect: certificate $i listed as ${roles[$((i - 1))]}" test -n "$block"
  fp=$(openssl x509 -in "part$i.pem" -noout -fingerprint -sha256 | cut -d= -f2)
  serial=$(openssl x509 -in "part$i.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  nb=$(rfc3339_of "part$i.pem" start)
  na=$(rfc3339_of "part$i.pem" end)
  expect_contains "cert inspect: certificate $i SHA-256 matches openssl ($fp)" "$block" "sha256        $fp"
  expect_contains "cert inspect: certificate $i serial matches openssl ($serial)" "$block" "serial        $serial"
  expect_contains "cert inspect: certificate $i validity $nb .. $na" "$block" "valid         $nb .. $na"
  expect_contains "cert inspect: certificate $i SPIFFE ID ${ids[$((i - 1))]}" "$block" "  spiffe id     ${ids[$((i - 1))]}"$'\n'
  expect_contains "cert inspect: certificate $i key type" "$block" "key           ${keys[$((i - 1))]}"
  expect_contains "cert inspect: certificate $i role" "$block" "type          ${roles[$((i - 1))]}"
done
check "cert inspect --json" "$M" cert inspect --json bundle.pem
echo "$OUT" >inspect.json
check "cert inspect --json: roles in order" \
  jq -e '[.certificates[].role] == ["leaf","intermediate CA","root CA"]' inspect.json
for i in 1 2 3; do
  fp=$(openssl x509 -in "part$i.pem" -noout -fingerprint -sha256 | cut -d= -f2)
  serial=$(openssl x509 -in "part$i.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  check "cert inspect --json: certificate $i fingerprint, serial and validity" \
    jq -e --arg fp "$fp" --arg s "$serial" --arg nb "$(rfc3339_of "part$i.pem" start)" \
    --arg na "$(rfc3339_of "part$i.pem" end)" --argjson i $((i - 1)) \
    '.certificates[$i] | .sha256_fingerprint == $fp and .serial == $s and .not_before == $nb and .not_after == $na' inspect.json
done
STDIN=bundle.pem check_output_contains "cert inspect -: reads standard input" "certificate 3 of 3: root CA" \
  "$M" cert inspect -
openssl x509 -in web/cert-chain.pem -outform DER -out leaf.der
check_output_contains "cert inspect: a DER certificate" "spiffe id     $ID" "$M" cert inspect leaf.der
check_output_contains "cert inspect --roots: verified" "verified: chains to root CA" \
  "$M" cert inspect web/cert-chain.pem --roots ca/root-cert.pem
check_fails_with "cert inspect --roots of another CA: NOT verified, exit 1" 1 "NOT verified" \
  "$M" cert inspect web/cert-chain.pem --roots ca-text/root-cert.pem
check_exit "cert inspect: no file and no --connect is an error" "1|2" "$M" cert inspect

########## cert verify ##########
check_output_contains "cert verify: OK for a good chain" "OK: $ID chains to root CA" \
  "$M" cert verify web/cert-chain.pem --roots web/root-cert.pem
check_output_contains "cert verify: --spiffe-id that matches" "OK: $ID" \
  "$M" cert verify web/cert-chain.pem --roots web/root-cert.pem --spiffe-id "$ID"
check_output_contains "cert verify: leaf + --chain" "through 1 intermediate(s)" \
  "$M" cert verify part1.pem --chain ca/ca-cert.pem --roots ca/root-cert.pem
check_fails_with "cert verify: wrong --spiffe-id" 1 "FAILED: wrong SPIFFE ID" \
  "$M" cert verify web/cert-chain.pem --roots web/root-cert.pem --spiffe-id "spiffe://$TD/ns/default/sa/db"
check_fails_with "cert verify: roots of another CA" 1 "FAILED: unknown issuer" \
  "$M" cert verify web/cert-chain.pem --roots ca-text/root-cert.pem
check_fails_with "cert verify: missing intermediate" 1 "FAILED: unknown issuer" \
  "$M" cert verify part1.pem --roots ca/root-cert.pem
expect_contains "cert verify: missing intermediate says an intermediate is missing" "$OUT" "intermediate is missing"
# The 2h certificate: expired 3 h from now, not yet valid an hour ago.
check_fails_with "cert verify --at after expiry" 1 "FAILED: expired: leaf $ID-2h" \
  "$M" cert verify web-2h/cert-chain.pem --roots ca/root-cert.pem --at "$(in_seconds 10800)"
check_fails_with "cert verify --at before validity" 1 "FAILED: not yet valid" \
  "$M" cert verify web-2h/cert-chain.pem --roots ca/root-cert.pem --at "$(in_seconds -3600)"
check_output_contains "cert verify --at within validity" "OK: $ID-2h" \
  "$M" cert verify web-2h/cert-chain.pem --roots ca/root-cert.pem --at "$(in_seconds 3600)"
check_fails_with "cert verify --key of another certificate" 1 "FAILED: key mismatch" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key web-2h/key.pem
check_fails_with "cert verify --at garbage is an error" 1 "invalid time" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --at yesterday
check_fails_with "cert verify: a CA certificate as the leaf" 1 "FAILED" \
  "$M" cert verify ca/cert-chain.pem --roots ca/root-cert.pem
expect_contains "cert verify: CA as leaf says why" "$OUT" "leaf certificate is a CA"
check "cert verify --json: valid" "$M" cert verify --json web/cert-chain.pem --roots ca/root-cert.pem
check "cert verify --json: fields" jq -e --arg id "$ID" '.valid == true and .spiffe_id == $id and .chain_length == 3' <<<"$OUT"
check_exit "cert verify --json: invalid exits 1" 1 "$M" cert verify --json web/cert-chain.pem --roots ca-text/root-cert.pem
check "cert verify --json: reason" jq -e '.valid == false and (.reason | startswith("unknown issuer"))' <<<"$OUT"

########## csr ##########
check "csr create" "$M" csr create --spiffe-id "$ID-csr" --key-out csr.key --out mine.csr
expect_eq "csr create: key 0600" 600 "$(mode_of csr.key)"
check_output_contains "csr inspect: our CSR" "spiffe id     $ID-csr" "$M" csr inspect mine.csr
STDIN=mine.csr check_output_contains "csr inspect -: standard input" "$ID-csr" "$M" csr inspect -
check "cert issue --csr: signs our CSR" "$M" cert issue --ca ca --spiffe-id "$ID-csr" --csr mine.csr --out web-csr
expect_true "cert issue --csr: writes no key.pem" test ! -e web-csr/key.pem
check "cert issue --csr: certificate matches the CSR's key" \
  "$M" cert verify web-csr/cert-chain.pem --roots ca/root-cert.pem --key csr.key
check_fails_with "cert issue --csr: CSR for another identity refused" 1 "the CSR asks for $ID-csr" \
  "$M" cert issue --ca ca --spiffe-id "$ID-other" --csr mine.csr --out web-csr-other
# Replacing a generated key with a CSR-based certificate must not leave the old key behind.
check "cert issue --csr --force over a directory holding key.pem" \
  "$M" cert issue --ca ca --spiffe-id "$ID-csr" --csr mine.csr --out web --force
run "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key web/key.pem
if [[ -e web/key.pem && $RC -ne 0 ]]; then
  fail "cert issue --csr --force leaves a stale key.pem that does not match the new cert-chain.pem" \
    "key.pem from the earlier issue is still there" "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key web/key.pem
else
  pass
fi

########## hostile input ##########
head -c 4096 /dev/urandom >garbage.bin
printf 'this is not a certificate\n' >garbage.txt
: >empty.pem
head -c 400 web-2h/cert-chain.pem >trunc1.pem                 # inside the first certificate
head -c $(($(wc -c <web-2h/cert-chain.pem) - 40)) web-2h/cert-chain.pem >trunc2.pem  # inside the second
sed '/END CERTIFICATE/d' web-2h/cert-chain.pem >noend.pem      # END lines removed
mkdir -p adir
declare -A WHY=([garbage.bin]="malformed certificate" [garbage.txt]="malformed certificate"
  [empty.pem]="empty certificate" [trunc1.pem]="malformed PEM block after certificate 0"
  [trunc2.pem]="malformed PEM block after certificate 1" [noend.pem]="malformed PEM block" [adir]="is a directory")
for f in garbage.bin garbage.txt empty.pem trunc1.pem trunc2.pem noend.pem adir; do
  check_fails_with "cert inspect $f: exit 1, says '${WHY[$f]}'" 1 "${WHY[$f]}" "$M" cert inspect "$f"
  expect_contains "cert inspect $f: one error line naming the file" "$ERR" "error: $f"
done
for f in garbage.bin empty.pem; do
  check_exit "cert verify $f (as leaf): exit 1" 1 "$M" cert verify "$f" --roots ca/root-cert.pem
  check_exit "cert verify $f (as roots): exit 1" 1 "$M" cert verify web/cert-chain.pem --roots "$f"
  check_exit "csr inspect $f: exit 1" 1 "$M" csr inspect "$f"
  check_exit "cert issue --csr $f: exit 1" 1 "$M" cert issue --ca ca --spiffe-id "$ID-x" --csr "$f" --out web-hostile
done
expect_true "hostile CSRs wrote nothing" test ! -e web-hostile
STDIN=trunc1.pem check_exit "cert inspect -: truncated PEM on stdin" 1 "$M" cert inspect -
STDIN=garbage.bin check_exit "csr inspect -: garbage on stdin" 1 "$M" csr inspect -
head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' 'A' >huge.pem
check_exit "cert inspect: a 3 MiB file is refused cleanly" 1 "$M" cert inspect huge.pem
check_exit "csr inspect: a 3 MiB file is refused cleanly" 1 "$M" csr inspect huge.pem

# More malformed input.
one_cert=$(<ca/ca-cert.pem)
for ((i = 0; i < 101; i++)); do printf '%s\n' "$one_cert"; done >bundle101.pem
check_fails_with "cert inspect: a bundle of 101 certificates is refused" 1 "more than 100 certificates" \
  "$M" cert inspect bundle101.pem
printf -- '-----BEGIN CERTIFICATE-----\nTUlJQmFhYWFh\n-----END CERTIFICATE-----\n' >badder.pem
check_fails_with "cert inspect: a PEM block whose DER is garbage" 1 "malformed certificate" "$M" cert inspect badder.pem
{ cat leaf.der; printf 'xx'; } >trailing.der
check_fails_with "cert inspect: DER with trailing bytes" 1 "trailing bytes" "$M" cert inspect trailing.der
check_fails_with "csr inspect: a certificate is not a CSR" 1 "not a CERTIFICATE REQUEST" "$M" csr inspect ca/ca-cert.pem
timeout 10 openssl req -in mine.csr -outform DER -out mine.der 2>/dev/null
{ cat mine.der; printf 'x'; } >csr-trailing.der
check_fails_with "csr inspect: DER CSR with trailing bytes" 1 "trailing bytes" "$M" csr inspect csr-trailing.der
head -c 20000 /dev/zero | tr '\0' 'A' >big.csr
check_fails_with "csr inspect: a 20 KB CSR is refused" 1 "larger than the limit" "$M" csr inspect big.csr
check_fails_with "cert issue: a 2 KiB+ SPIFFE ID is refused" 1 "longer than 2048 bytes" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD/$(printf 'a%.0s' $(seq 2100))" --out web-longid
check_fails_with "ca init: a 256-byte trust domain is refused" 1 "longer than 255 bytes" \
  "$M" ca init --trust-domain "$(printf 'a%.0s' $(seq 256))" --out ca-longtd
check_fails_with "cert issue: a newline in the SPIFFE ID is refused" 1 "path character" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD/a"$'\n'"b" --out web-newline
expect_true "cert issue: the refused IDs wrote nothing" test ! -e web-longid -a ! -e web-newline -a ! -e ca-longtd
printf -- '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' >badkey.pem
check_fails_with "cert verify --key: a damaged key" 1 "cannot parse private key" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key badkey.pem
check_fails_with "cert verify --at: year 1900 is refused" 1 "outside 1970..2200" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --at 1900-01-01T00:00:00Z
check_fails_with "cert verify --at: month 13 is refused" 1 "invalid time" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --at 2026-13-01T00:00:00Z

# A private key given as a certificate: refused, and the key never echoed.
key_lines=$(grep -v -- '-----' web-2h/key.pem)
for cmd in "cert inspect web-2h/key.pem" "cert verify web-2h/key.pem --roots ca/root-cert.pem" \
  "cert verify web/cert-chain.pem --roots web-2h/key.pem" "csr inspect web-2h/key.pem"; do
  # shellcheck disable=SC2086
  check_exit "$cmd: refused" 1 "$M" $cmd
  leaked=0
  while IFS= read -r l; do
    [[ -n "$l" && "$OUT$ERR" == *"${l:0:24}"* ]] && leaked=1
  done <<<"$key_lines"
  expect_eq "$cmd: the key's base64 is not in the output" 0 "$leaked"
  [[ $cmd == "cert inspect"* ]] && expect_contains "$cmd: says it found a key block" "$ERR" 'unexpected PEM block "PRIVATE KEY"'
done
check_fails_with "cert verify --key with a certificate file" 1 "" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key web/cert-chain.pem
check_fails_with "cert verify --key with garbage" 1 "" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key garbage.bin

# CSRs with the wrong shape.
timeout 10 openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout two.key -subj / \
  -addext "subjectAltName=URI:spiffe://$TD/a,URI:spiffe://$TD/b" -out two-uris.csr 2>/dev/null
check_fails_with "csr inspect: two URI SANs refused" 1 "2 URI SANs" "$M" csr inspect two-uris.csr
check_fails_with "cert issue --csr: two URI SANs refused" 1 "2 URI SANs" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD/a" --csr two-uris.csr --out web-two
expect_true "cert issue --csr: two-URI CSR wrote nothing" test ! -e web-two
timeout 10 openssl req -new -newkey rsa:1024 -nodes -keyout rsa1024.key -subj / \
  -addext "subjectAltName=URI:spiffe://$TD/weak" -out rsa1024.csr 2>/dev/null
check_fails_with "csr inspect: RSA-1024 refused" 1 "too weak" "$M" csr inspect rsa1024.csr
check_fails_with "cert issue --csr: RSA-1024 refused" 1 "too weak" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD/weak" --csr rsa1024.csr --out web-weak
expect_true "cert issue --csr: RSA-1024 CSR wrote nothing" test ! -e web-weak
timeout 10 openssl req -new -key two.key -subj /CN=x -out nouri.csr 2>/dev/null
check_fails_with "csr inspect: no URI SAN refused" 1 "no URI SAN" "$M" csr inspect nouri.csr
timeout 10 openssl req -new -key two.key -subj / -addext "subjectAltName=URI:spiffe://$TD" -out tdonly.csr 2>/dev/null
check_fails_with "cert issue --csr: trust-domain-only SPIFFE ID refused" 1 "no path" \
  "$M" cert issue --ca ca --spiffe-id "spiffe://$TD" --csr tdonly.csr --out web-td
# A CSR whose signature does not verify: flip a byte inside the signature.
cp mine.der badsig.der
off=$(($(wc -c <mine.der) - 5))
byte=$(od -An -tu1 -j "$off" -N1 mine.der | tr -d ' ')
# shellcheck disable=SC2059
printf "\\$(printf '%03o' $((byte ^ 1)))" | dd of=badsig.der bs=1 seek="$off" conv=notrunc status=none
check_fails_with "csr inspect: a CSR whose signature does not verify" 1 "" "$M" csr inspect badsig.der
check_fails_with "cert issue --csr: a CSR whose signature does not verify" 1 "" \
  "$M" cert issue --ca ca --spiffe-id "$ID-csr" --csr badsig.der --out web-badsig
check_output_contains "csr inspect: the intact DER CSR parses" "$ID-csr" "$M" csr inspect mine.der
cat mine.csr mine.csr >twice.csr
check_fails_with "csr inspect: two PEM blocks refused" 1 "exactly one PEM block" "$M" csr inspect twice.csr

# Nonexistent files: a clear error, exit 1 (not a crash).
check_fails_with "cert inspect: nonexistent file" 1 "cannot open nope.pem: No such file" "$M" cert inspect nope.pem
check_fails_with "cert verify: nonexistent leaf" 1 "nope.pem" "$M" cert verify nope.pem --roots ca/root-cert.pem
check_fails_with "cert verify: nonexistent roots" 1 "nope.pem" "$M" cert verify web/cert-chain.pem --roots nope.pem
check_fails_with "cert verify: nonexistent --chain" 1 "nope.pem" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --chain nope.pem
check_fails_with "cert verify: nonexistent --key" 1 "nope.pem" \
  "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --key nope.pem
check_fails_with "cert issue: nonexistent CA directory" 1 "holds no CA" \
  "$M" cert issue --ca nope --spiffe-id "$ID" --out web-nope
check_fails_with "cert issue: nonexistent --csr" 1 "nope.csr" \
  "$M" cert issue --ca ca --spiffe-id "$ID" --csr nope.csr --out web-nope
expect_true "cert issue: nothing written for nonexistent inputs" test ! -e web-nope
check_fails_with "csr inspect: nonexistent file" 1 "nope.csr" "$M" csr inspect nope.csr
check_fails_with "ca intermediate: nonexistent root" 1 "nope.pem" \
  "$M" ca intermediate --root-cert nope.pem --root-key ca/root/root-key.pem --out ca-nope
check_fails_with "ca intermediate: nonexistent root key" 1 "nope.pem" \
  "$M" ca intermediate --root-cert ca/root-cert.pem --root-key nope.pem --out ca-nope
mkdir -p halfca && cp ca/ca-cert.pem halfca/
check_fails_with "cert issue: CA directory without its key" 1 "ca-key.pem" \
  "$M" cert issue --ca halfca --spiffe-id "$ID" --out web-half
mkdir -p wrongkeyca && cp ca/ca-cert.pem ca/cert-chain.pem ca/root-cert.pem wrongkeyca/ && cp ca-b/ca-key.pem wrongkeyca/
check_fails_with "cert issue: CA directory whose key does not match" 1 "key mismatch" \
  "$M" cert issue --ca wrongkeyca --spiffe-id "$ID" --out web-wrongkey

# The 5 s CA made at the start: wait (bounded) until openssl says it expired.
for ((i = 0; i < 100; i++)); do
  openssl x509 -in ca-expiring/ca-cert.pem -noout -checkend 0 >/dev/null 2>&1 || break
  sleep 0.1
done
expect_true "the short-lived CA has expired" bash -c '! openssl x509 -in ca-expiring/ca-cert.pem -noout -checkend 0 >/dev/null'
check_fails_with "cert issue: an expired CA is refused" 1 "expired" \
  "$M" cert issue --ca ca-expiring --spiffe-id "spiffe://$TD/late" --out web-late
expect_true "cert issue: the expired CA wrote nothing" test ! -e web-late
check_fails_with "cert verify: the leaf of the expired CA now fails" 1 "FAILED: expired" \
  "$M" cert verify web-expiring/cert-chain.pem --roots ca-expiring/root-cert.pem

# Usage errors exit 2.
check_exit "usage: no subcommand" 2 "$M"
check_exit "usage: unknown flag" 2 "$M" cert verify web/cert-chain.pem --roots ca/root-cert.pem --bogus
check_exit "usage: missing required option" 2 "$M" ca init --out x
check_exit "--help exits 0" 0 "$M" cert issue --help
check_output_contains "--version" "meshid " "$M" --version

finish
