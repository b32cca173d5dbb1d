#!/usr/bin/env bash
# Cross-checks meshid against the real openssl command: openssl verifies what
# meshid issues, meshid reads what openssl makes, and the two do mutual TLS.
#   bash tests/integration/openssl_interop_test.sh build/meshid
# shellcheck disable=SC2016  # jq programs use $variables of their own
source "$(dirname "$0")/lib.sh" "$@"
cd "$TMP" || exit 2
M=$MESHID
TD=example.org
printf 'GET / HTTP/1.0\r\n\r\n' >http-get.txt

pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
pubkey_of_csr() { openssl req -in "$1" -noout -pubkey 2>/dev/null; }
pubkey_of_key() { openssl pkey -in "$1" -pubout 2>/dev/null; }
ext_of() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null; }  # ext_of CERT subjectAltName

########## CAs ##########
# A: the mesh's CA (two intermediates under one root); B: a stranger with the
# same trust domain, so every failure against B is about the root, not the name.
check "setup: CA A" "$M" ca init --trust-domain "$TD" --out A
check "setup: CA A, second intermediate" \
  "$M" ca intermediate --root-cert A/root/root-cert.pem --root-key A/root/root-key.pem --out A2
check "setup: CA B (another root, same trust domain)" "$M" ca init --trust-domain "$TD" --out B
check "setup: RSA-2048 CA" "$M" ca init --trust-domain "$TD" --out R --key-type rsa-2048
check "setup: P-384 CA" "$M" ca init --trust-domain "$TD" --out P --key-type ec-p384
check "setup: RSA-2048 intermediate under A's root" \
  "$M" ca intermediate --root-cert A/root/root-cert.pem --root-key A/root/root-key.pem --out A3 --key-type rsa-2048

########## openssl verify on everything meshid issues ##########
issue() {  # issue CA OUT PATH KEYTYPE
  check "issue $2 ($4) from $1" "$M" cert issue --ca "$1" --spiffe-id "spiffe://$TD/$3" --out "$2" --key-type "$4"
}
issue A leaf-p256 ns/default/sa/p256 ec-p256
issue A leaf-p384 ns/default/sa/p384 ec-p384
issue A leaf-rsa ns/default/sa/rsa rsa-2048
issue A leaf-ed ns/default/sa/ed ed25519
issue A2 leaf-a2 ns/default/sa/a2 ec-p256
issue A3 leaf-a3 ns/default/sa/a3 ec-p384
issue R leaf-r ns/default/sa/r rsa-2048
issue P leaf-p ns/default/sa/p ec-p256

# header_and_next TEXT HEADER: sets HDR to the rest of the line that starts with
# HEADER (e.g. " critical") and NEXT to the following line, trimmed. No forks.
header_and_next() {
  local re="$2:([^"$'\n'"]*)"$'\n'"[ ]*([^"$'\n'"]*)"
  HDR="" NEXT=""
  if [[ $1 =~ $re ]]; then
    HDR=${BASH_REMATCH[1]% }
    NEXT=${BASH_REMATCH[2]}
  fi
}

declare -A LEAFPATH=([leaf-p256]=ns/default/sa/p256 [leaf-p384]=ns/default/sa/p384 [leaf-rsa]=ns/default/sa/rsa
  [leaf-ed]=ns/default/sa/ed [leaf-a2]=ns/default/sa/a2 [leaf-a3]=ns/default/sa/a3 [leaf-r]=ns/default/sa/r
  [leaf-p]=ns/default/sa/p)
for ca in A B R P; do
  check_output_contains "CA $ca: openssl verify -x509_strict (root)" "OK" \
    openssl verify -x509_strict -CAfile "$ca/root-cert.pem" "$ca/root-cert.pem"
done
for d in leaf-p256 leaf-p384 leaf-rsa leaf-ed leaf-a2 leaf-a3 leaf-r leaf-p; do
  n=$(split_chain "$d/cert-chain.pem" "$d/c")
  expect_eq "$d: chain is leaf + 1 intermediate" 2 "$n"
  for purpose in sslclient sslserver; do
    check_output_contains "$d: openssl verify -x509_strict -purpose $purpose (leaf)" "$d/c1.pem: OK" \
      openssl verify -x509_strict -purpose "$purpose" -CAfile "$d/root-cert.pem" -untrusted "$d/c2.pem" "$d/c1.pem"
  done
  # (The leaf checks above also judge the intermediate as an SSL client/server CA;
  # an SSL purpose on a CA certificate as the end entity is rightly refused.)
  check_output_contains "$d: openssl verify -x509_strict (intermediate)" "$d/c2.pem: OK" \
    openssl verify -x509_strict -CAfile "$d/root-cert.pem" "$d/c2.pem"
  check "$d: key.pem is the leaf's key (openssl)" test "$(pubkey_of_cert "$d/c1.pem")" == "$(pubkey_of_key "$d/key.pem")"

  # The X.509-SVID profile (PROTOCOLS.md §4), as openssl reads it.
  txt=$(openssl x509 -in "$d/c1.pem" -noout -text)
  itxt=$(openssl x509 -in "$d/c2.pem" -noout -text)
  header_and_next "$txt" "X509v3 Subject Alternative Name"
  expect_eq "$d: SAN critical" " critical" "$HDR"
  expect_eq "$d: SAN is exactly the one SPIFFE ID" "URI:spiffe://$TD/${LEAFPATH[$d]}" "$NEXT"
  header_and_next "$txt" "X509v3 Basic Constraints"
  expect_eq "$d: basicConstraints critical CA:FALSE" " critical CA:FALSE" "$HDR $NEXT"
  header_and_next "$txt" "X509v3 Key Usage"
  expect_eq "$d: keyUsage critical" " critical" "$HDR"
  expect_contains "$d: keyUsage digitalSignature" "$NEXT" "Digital Signature"
  expect_lacks "$d: keyUsage without keyCertSign" "$NEXT" "Certificate Sign"
  expect_lacks "$d: keyUsage without cRLSign" "$NEXT" "CRL Sign"
  header_and_next "$txt" "X509v3 Extended Key Usage"
  expect_eq "$d: EKU serverAuth and clientAuth" "TLS Web Server Authentication, TLS Web Client Authentication" "$NEXT"
  header_and_next "$itxt" "X509v3 Subject Key Identifier"
  ski=$NEXT
  header_and_next "$txt" "X509v3 Authority Key Identifier"
  expect_true "$d: the intermediate has a subjectKeyIdentifier" test -n "$ski"
  expect_eq "$d: leaf AKI is the intermediate's SKI" "$ski" "${NEXT#keyid:}"
  header_and_next "$txt" "X509v3 Subject Key Identifier"
  expect_true "$d: leaf has a subjectKeyIdentifier" test -n "$NEXT"
  header_and_next "$txt" "Serial Number"
  serial=${NEXT//:/}
  expect_true "$d: serial has at least 64 bits ($serial)" test "${#serial}" -ge 16
  expect_true "$d: serial is positive (top bit clear)" test $((16#${serial:0:1})) -lt 8
  [[ $txt =~ Not\ Before:\ ([^$'\n']*) ]] && nb=${BASH_REMATCH[1]}
  [[ $txt =~ Not\ After\ :\ ([^$'\n']*) ]] && na=${BASH_REMATCH[1]}
  mapfile -t secs < <(date -u +%s -f - <<<"$nb"$'\n'"$na")
  expect_eq "$d: default lifetime 1h, backdated 60 s" 3660 "$((secs[1] - secs[0]))"
  header_and_next "$itxt" "X509v3 Basic Constraints"
  expect_eq "$d: intermediate basicConstraints" " critical CA:TRUE, pathlen:0" "$HDR $NEXT"
  header_and_next "$itxt" "X509v3 Key Usage"
  expect_eq "$d: intermediate keyUsage" " critical Certificate Sign, CRL Sign" "$HDR $NEXT"
  header_and_next "$itxt" "X509v3 Subject Alternative Name"
  expect_eq "$d: intermediate URI SAN is the trust domain" "URI:spiffe://$TD" "$NEXT"
done
check_fails "openssl rejects a leaf without its intermediate" \
  openssl verify -x509_strict -purpose sslclient -CAfile leaf-p256/root-cert.pem leaf-p256/c1.pem
check_fails "openssl rejects a leaf against B's root" \
  openssl verify -x509_strict -purpose sslclient -CAfile B/root-cert.pem -untrusted leaf-p256/c2.pem leaf-p256/c1.pem
check "A2's SVID verifies against A's one root (openssl)" \
  openssl verify -x509_strict -purpose sslclient -CAfile A/root-cert.pem -untrusted leaf-a2/c2.pem leaf-a2/c1.pem
check_fails "openssl: A2's SVID does not verify through A's first intermediate" \
  openssl verify -x509_strict -purpose sslclient -CAfile A/root-cert.pem -untrusted A/ca-cert.pem leaf-a2/c1.pem

########## CSRs made by openssl, read and signed by meshid ##########
csr_by_openssl() {  # csr_by_openssl NAME NEWKEY-ARGS... (the SPIFFE ID is spiffe://TD/ossl/NAME)
  local name=$1
  shift
  check "openssl req: $name CSR" openssl req -new "$@" -nodes -keyout "$name.key" -subj "/O=$TD" \
    -addext "subjectAltName=URI:spiffe://$TD/ossl/$name" -out "$name.csr"
}
csr_by_openssl rsa2048 -newkey rsa:2048
csr_by_openssl ecp256 -newkey ec -pkeyopt ec_paramgen_curve:P-256
csr_by_openssl ecp384 -newkey ec -pkeyopt ec_paramgen_curve:P-384
declare -A CSRKEY=([rsa2048]="RSA 2048" [ecp256]="ECDSA P-256" [ecp384]="ECDSA P-384")
for name in rsa2048 ecp256 ecp384; do
  check_output_contains "csr inspect: openssl's $name CSR" "spiffe id     spiffe://$TD/ossl/$name" \
    "$M" csr inspect "$name.csr"
  check "csr inspect --json: openssl's $name CSR" "$M" csr inspect --json "$name.csr"
  check "csr inspect --json: $name fields" \
    jq -e --arg id "spiffe://$TD/ossl/$name" --arg k "${CSRKEY[$name]}" \
    '.spiffe_id == $id and .key == $k and .uri_sans == [$id] and .signature_valid and .subject == "O=example.org"' <<<"$OUT"
  check "cert issue --csr: signs openssl's $name CSR" \
    "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ossl/$name" --csr "$name.csr" --out "signed-$name"
  split_chain "signed-$name/cert-chain.pem" "signed-$name/c" >/dev/null
  check "cert issue --csr $name: the certificate carries the CSR's key" \
    test "$(pubkey_of_cert "signed-$name/c1.pem")" == "$(pubkey_of_csr "$name.csr")"
  check "cert issue --csr $name: openssl verifies it (sslclient)" \
    openssl verify -x509_strict -purpose sslclient -CAfile A/root-cert.pem -untrusted "signed-$name/c2.pem" "signed-$name/c1.pem"
  check "cert issue --csr $name: openssl verifies it (sslserver)" \
    openssl verify -x509_strict -purpose sslserver -CAfile A/root-cert.pem -untrusted "signed-$name/c2.pem" "signed-$name/c1.pem"
  check_output_contains "cert issue --csr $name: meshid verifies it with openssl's key" "OK: spiffe://$TD/ossl/$name" \
    "$M" cert verify "signed-$name/cert-chain.pem" --roots A/root-cert.pem --key "$name.key"
  check "cert issue --csr $name: DER form of the CSR parses too" \
    bash -c 'openssl req -in "$1.csr" -outform DER -out "$1.der" && "$2" csr inspect "$1.der"' _ "$name" "$M"
done
# The CSR's subject and DNS names are not copied: the SVID names only the SPIFFE ID.
check "openssl req: CSR with a CN and a DNS SAN besides the URI" openssl req -new -key ecp256.key \
  -subj "/CN=web.example.com" -addext "subjectAltName=URI:spiffe://$TD/ossl/dns,DNS:web.example.com" -out dns.csr
check_output_contains "csr inspect: shows the DNS name" "dns names     web.example.com" "$M" csr inspect dns.csr
check "cert issue --csr: CSR with extra names" \
  "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ossl/dns" --csr dns.csr --out signed-dns
expect_eq "cert issue --csr: the SVID carries only the URI SAN" "URI:spiffe://$TD/ossl/dns" \
  "$(ext_of signed-dns/cert-chain.pem subjectAltName | sed -n '2s/^ *//p')"
expect_eq "cert issue --csr: the SVID's subject is empty" "subject=" \
  "$(openssl x509 -in signed-dns/cert-chain.pem -noout -subject | tr -d ' ')"
# A CSR that asks to be a CA gets a leaf: meshid takes only the key and the SPIFFE ID.
check "openssl req: a CSR asking for CA:TRUE and keyCertSign" openssl req -new -key ecp256.key -subj / \
  -addext "subjectAltName=URI:spiffe://$TD/ossl/wants-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out wants-ca.csr
check "cert issue --csr: signs the CA-asking CSR" \
  "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ossl/wants-ca" --csr wants-ca.csr --out signed-wants-ca
wtxt=$(openssl x509 -in signed-wants-ca/cert-chain.pem -noout -text)
header_and_next "$wtxt" "X509v3 Basic Constraints"
expect_eq "cert issue --csr: ... as a leaf (CA:FALSE)" " critical CA:FALSE" "$HDR $NEXT"
header_and_next "$wtxt" "X509v3 Key Usage"
expect_eq "cert issue --csr: ... without keyCertSign" " critical Digital Signature" "$HDR $NEXT"
STDIN=ecp256.csr check "cert issue --csr -: CSR on standard input" \
  "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ossl/ecp256" --csr - --out signed-stdin

########## CSRs made by meshid, checked by openssl ##########
for kt in ec-p256 ec-p384 rsa-2048 ed25519; do
  check "csr create --key-type $kt" "$M" csr create --spiffe-id "spiffe://$TD/mine/$kt" --key-type "$kt" \
    --key-out "mine-$kt.key" --out "mine-$kt.csr"
  check_output_contains "csr create $kt: openssl req -verify" "verify OK" \
    openssl req -verify -in "mine-$kt.csr" -noout
  check_output_contains "csr create $kt: openssl sees the URI SAN" "URI:spiffe://$TD/mine/$kt" \
    openssl req -in "mine-$kt.csr" -noout -text
  check "csr create $kt: the CSR's key is the key written (openssl)" \
    test "$(pubkey_of_csr "mine-$kt.csr")" == "$(pubkey_of_key "mine-$kt.key")"
  check "csr create $kt: openssl can sign it (openssl x509 -req)" \
    openssl x509 -req -in "mine-$kt.csr" -CA A/ca-cert.pem -CAkey A/ca-key.pem -days 1 \
    -copy_extensions copy -out "mine-$kt-ossl.pem"
done
check "openssl genpkey: a P-256 key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ossl.key
check "csr create --key: uses openssl's key" "$M" csr create --spiffe-id "spiffe://$TD/mine/ossl-key" --key ossl.key --out ossl-key.csr
check "csr create --key: the CSR carries that key" test "$(pubkey_of_csr ossl-key.csr)" == "$(pubkey_of_key ossl.key)"
check_output_contains "csr create --key: openssl req -verify" "verify OK" openssl req -verify -in ossl-key.csr -noout
check_output_contains "csr create to stdout: openssl reads it" "verify OK" \
  bash -c '"$1" csr create --spiffe-id "spiffe://example.org/mine/stdout" --key ossl.key | openssl req -verify -noout' _ "$M"

########## meshid reads openssl's certificates ##########
check "openssl req -x509: a self-signed certificate with DNS and IP SANs" openssl req -x509 -new \
  -key ossl.key -subj "/CN=plain" -addext "subjectAltName=DNS:plain.example.com,IP:127.0.0.1" -days 1 -out plain.pem
check_output_contains "cert inspect: openssl's certificate, DNS names" "dns names     plain.example.com" "$M" cert inspect plain.pem
check_output_contains "cert inspect: openssl's certificate, IP addresses" "127.0.0.1" "$M" cert inspect plain.pem
check_output_contains "cert inspect: openssl's certificate, no SPIFFE ID" "spiffe id     (none)" "$M" cert inspect plain.pem
check_fails_with "cert verify: openssl's self-signed CA certificate is no SVID" 1 "FAILED: leaf certificate is a CA" \
  "$M" cert verify plain.pem --roots plain.pem

# Leaves that openssl signs with A's intermediate: openssl accepts them all (it knows
# nothing of SPIFFE); meshid accepts only the one that follows the X.509-SVID profile.
svid_by_openssl() {  # svid_by_openssl NAME EXTENSION-LINES
  printf '%s\n' "$2" >"$1.ext"
  check "openssl x509 -req: leaf '$1' signed by A's intermediate" \
    openssl x509 -req -in ecp256.csr -CA A/ca-cert.pem -CAkey A/ca-key.pem -days 1 -extfile "$1.ext" -out "$1.pem"
  check "openssl verify accepts leaf '$1'" \
    openssl verify -CAfile A/root-cert.pem -untrusted A/ca-cert.pem "$1.pem"
}
svid_by_openssl good "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=critical,URI:spiffe://$TD/ossl/good"
check_output_contains "cert verify: an SVID made by openssl is OK" "OK: spiffe://$TD/ossl/good" \
  "$M" cert verify good.pem --chain A/ca-cert.pem --roots A/root-cert.pem --spiffe-id "spiffe://$TD/ossl/good" --key ecp256.key
svid_by_openssl nouri "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectAltName=DNS:web.example.com"
check_fails_with "cert verify: leaf without a URI SAN" 1 "FAILED: leaf certificate has no URI SAN" \
  "$M" cert verify nouri.pem --chain A/ca-cert.pem --roots A/root-cert.pem
svid_by_openssl twouris "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectAltName=critical,URI:spiffe://$TD/ossl/a,URI:spiffe://$TD/ossl/b"
check_fails_with "cert verify: leaf with two URI SANs" 1 "FAILED: leaf certificate has 2 URI SANs" \
  "$M" cert verify twouris.pem --chain A/ca-cert.pem --roots A/root-cert.pem
svid_by_openssl nopath "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectAltName=critical,URI:spiffe://$TD"
check_fails_with "cert verify: leaf whose SPIFFE ID has no path" 1 "has no path" \
  "$M" cert verify nopath.pem --chain A/ca-cert.pem --roots A/root-cert.pem
svid_by_openssl certsign "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyCertSign
subjectAltName=critical,URI:spiffe://$TD/ossl/certsign"
check_fails_with "cert verify: leaf with keyCertSign" 1 "keyCertSign" \
  "$M" cert verify certsign.pem --chain A/ca-cert.pem --roots A/root-cert.pem
svid_by_openssl badid "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectAltName=critical,URI:spiffe://$TD/a/../b"
check_fails_with "cert verify: leaf with an invalid SPIFFE ID" 1 "not a valid SPIFFE ID" \
  "$M" cert verify badid.pem --chain A/ca-cert.pem --roots A/root-cert.pem

########## CA files made by openssl (the cert-manager seed's shape) ##########
# A root and an intermediate made by openssl: the intermediate has digitalSignature,
# keyEncipherment, a CN, a DNS SAN and no SPIFFE ID; its key is PKCS#1 RSA, as
# cert-manager writes it. meshid must load it and issue SVIDs openssl accepts.
mkdir -p seed/cm seed/nosign
check "seed: openssl root" openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout seed/root.key -subj "/O=seed/CN=seed root" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -days 30 -out seed/root.pem
check "seed: PKCS#1 RSA key" openssl genrsa -traditional -out seed/int.key 2048
check "seed: intermediate CSR" openssl req -new -key seed/int.key -subj "/CN=istio-ca" -out seed/int.csr
printf '%s\n' "basicConstraints=critical,CA:TRUE" "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
  "subjectAltName=DNS:istio-ca.istio-system.svc" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >seed/int.ext
check "seed: intermediate signed by openssl" openssl x509 -req -in seed/int.csr -CA seed/root.pem -CAkey seed/root.key \
  -days 10 -extfile seed/int.ext -out seed/int.pem
cat seed/int.pem seed/root.pem >seed/cm/tls.crt && cp seed/int.key seed/cm/tls.key && cp seed/root.pem seed/cm/ca.crt
check_output_contains "cert issue: from openssl's cert-manager-shaped CA" "issued spiffe://cluster.local/ns/a/sa/b" \
  "$M" cert issue --ca seed/cm --spiffe-id spiffe://cluster.local/ns/a/sa/b --out seed/leaf
expect_eq "seed: leaf chain is leaf + intermediate (no root)" 2 "$(split_chain seed/leaf/cert-chain.pem seed/leaf/c)"
check_output_contains "seed: openssl verifies meshid's SVID (sslclient)" "OK" \
  openssl verify -x509_strict -purpose sslclient -CAfile seed/root.pem -untrusted seed/leaf/c2.pem seed/leaf/c1.pem
check_output_contains "seed: openssl verifies meshid's SVID (sslserver)" "OK" \
  openssl verify -x509_strict -purpose sslserver -CAfile seed/root.pem -untrusted seed/leaf/c2.pem seed/leaf/c1.pem
check_output_contains "seed: meshid verifies it" "OK: spiffe://cluster.local/ns/a/sa/b" \
  "$M" cert verify seed/leaf/cert-chain.pem --roots seed/cm/ca.crt --key seed/leaf/key.pem
printf '%s\n' "basicConstraints=critical,CA:TRUE" "keyUsage=critical,digitalSignature,keyEncipherment" >seed/nosign.ext
check "seed: a CA certificate without keyCertSign" openssl x509 -req -in seed/int.csr -CA seed/root.pem \
  -CAkey seed/root.key -days 10 -extfile seed/nosign.ext -out seed/nosign/tls.crt
cp seed/int.key seed/nosign/tls.key && cp seed/root.pem seed/nosign/ca.crt
check_fails_with "cert issue: a plugged-in CA without keyCertSign is refused" 1 "lacks the keyCertSign" \
  "$M" cert issue --ca seed/nosign --spiffe-id spiffe://cluster.local/ns/a/sa/b --out seed/leaf-nosign
expect_true "cert issue: nothing written by the refused CA" test ! -e seed/leaf-nosign

########## mutual TLS between openssl s_server and s_client ##########
check "issue: server SVID (P-256) from A" "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ns/default/sa/server" --out srv
check "issue: client SVID (RSA-2048) from A" "$M" cert issue --ca A --spiffe-id "spiffe://$TD/ns/default/sa/client" --out cli --key-type rsa-2048
check "issue: client SVID from A's second intermediate" "$M" cert issue --ca A2 --spiffe-id "spiffe://$TD/ns/other/sa/client" --out cli2
check "issue: client SVID from B" "$M" cert issue --ca B --spiffe-id "spiffe://$TD/ns/default/sa/client" --out cli-b
check "issue: server SVID from B" "$M" cert issue --ca B --spiffe-id "spiffe://$TD/ns/default/sa/server" --out srv-b
for d in srv cli cli2 cli-b srv-b; do
  expect_eq "$d: chain splits into leaf + intermediate" 2 "$(split_chain "$d/cert-chain.pem" "$d/c")"
done

# start_tls_server NAME CERTDIR [s_server options...]: sets PORT; -www answers HTTP.
start_tls_server() {
  local name=$1 dir=$2
  shift 2
  start_server "$name.log" openssl s_server -accept 127.0.0.1:0 -cert "$dir/c1.pem" -cert_chain "$dir/c2.pem" \
    -key "$dir/key.pem" -www "$@"
  PORT=$(wait_for_accept "$name.log") || PORT=""
  expect_true "$name: s_server is listening (port ${PORT:-none})" test -n "$PORT"
}
mtls() {  # mtls PORT CLIENTDIR ROOTS [s_client options...]: GET / over mutual TLS
  local port=$1 dir=$2 roots=$3
  shift 3
  STDIN=http-get.txt run openssl s_client -connect "127.0.0.1:$port" -cert "$dir/c1.pem" -cert_chain "$dir/c2.pem" \
    -key "$dir/key.pem" -CAfile "$roots" -verify_return_error -quiet "$@"
}
got_200() { [[ "$OUT" == *"HTTP/1.0 200 ok"* ]]; }

mtls_server_args=(-CAfile A/root-cert.pem -Verify 2 -verify_return_error)
start_tls_server mtls srv "${mtls_server_args[@]}"
if [[ -n "$PORT" ]]; then
  for proto in -tls1_3 -tls1_2; do
    mtls "$PORT" cli A/root-cert.pem "$proto"
    if got_200; then pass; else fail "mTLS $proto: A client -> A server: the server answers 200" "no HTTP 200" openssl s_client "$proto"; fi
    mtls "$PORT" cli2 A/root-cert.pem "$proto"
    if got_200; then pass; else fail "mTLS $proto: client of A's second intermediate is accepted" "no HTTP 200" openssl s_client "$proto"; fi
    errs_before=$(grep -c "verify error" mtls.log)
    mtls "$PORT" cli-b A/root-cert.pem "$proto"
    if got_200; then fail "mTLS $proto: a client from another root is refused" "got HTTP 200" openssl s_client "$proto"; else pass; fi
    expect_true "mTLS $proto: the server logged a verify error for B's client" \
      wait_for_log_count mtls.log "verify error" $((errs_before + 1))
    # Without the intermediate the server cannot build the client's chain.
    STDIN=http-get.txt run openssl s_client -connect "127.0.0.1:$PORT" -cert cli/c1.pem -key cli/key.pem \
      -CAfile A/root-cert.pem -verify_return_error -quiet "$proto"
    if got_200; then fail "mTLS $proto: a client that omits its intermediate is refused" "got HTTP 200" openssl s_client; else pass; fi
    # No client certificate at all.
    STDIN=http-get.txt run openssl s_client -connect "127.0.0.1:$PORT" -CAfile A/root-cert.pem -verify_return_error -quiet "$proto"
    if got_200; then fail "mTLS $proto: a client without a certificate is refused" "got HTTP 200" openssl s_client; else pass; fi
  done
  expect_contains "mTLS: the server verified the A client's leaf" "$(<mtls.log)" $'\ndepth=0 \nverify return:1\n'
fi

# A server from another root: the client refuses it.
start_tls_server foreign srv-b "${mtls_server_args[@]}"
if [[ -n "$PORT" ]]; then
  for proto in -tls1_3 -tls1_2; do
    mtls "$PORT" cli A/root-cert.pem "$proto"
    if got_200; then fail "mTLS $proto: the client refuses a server from another root" "got HTTP 200" openssl s_client; else pass; fi
    expect_true "mTLS $proto: ... with a verify error and a non-zero exit" \
      test "$RC" -ne 0 -a "$RC" -lt 124 -a -n "$(grep -E 'verify error|certificate verify failed' <<<"$ERR")"
  done
fi

########## meshid cert inspect --connect ##########
start_tls_server plain srv
if [[ -n "$PORT" ]]; then
  fp=$(openssl x509 -in srv/c1.pem -noout -fingerprint -sha256 | cut -d= -f2)
  check_output_contains "inspect --connect: shows the served chain" "presented 2 certificate(s)" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem
  expect_contains "inspect --connect: the server's SPIFFE ID" "$OUT" "spiffe id     spiffe://$TD/ns/default/sa/server"
  expect_contains "inspect --connect: the served leaf's fingerprint" "$OUT" "sha256        $fp"
  expect_contains "inspect --connect: the intermediate" "$OUT" "certificate 2 of 2: intermediate CA"
  expect_contains "inspect --connect: verified" "$OUT" "verified: chains to root CA"
  check_fails_with "inspect --connect --roots of another CA: NOT verified, exit 1" 1 "NOT verified" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --roots B/root-cert.pem
  check_output_contains "inspect --connect --spiffe-id (right)" "verified" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem --spiffe-id "spiffe://$TD/ns/default/sa/server"
  check_fails_with "inspect --connect --spiffe-id (wrong): exit 1" 1 "NOT verified: wrong SPIFFE ID" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem --spiffe-id "spiffe://$TD/ns/default/sa/db"
  check "inspect --connect --json" "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem --json
  check "inspect --connect --json: fields" \
    jq -e --arg fp "$fp" '.verification.valid and (.certificates | length) == 2
      and .certificates[0].sha256_fingerprint == $fp and (.protocol | startswith("TLS"))' <<<"$OUT"
  check_output_contains "inspect --connect without --roots: just shows the chain" "certificate 1 of 2: leaf" \
    "$M" cert inspect --connect "localhost:$PORT"
fi
stop_server "$LAST_SERVER_PID"
check_fails_with "inspect --connect: a closed port fails cleanly" 1 "cannot connect" \
  "$M" cert inspect --connect "127.0.0.1:$PORT" --timeout-ms 2000
check_fails_with "inspect --connect: no port" 1 "HOST:PORT" "$M" cert inspect --connect 127.0.0.1
check_fails_with "inspect --connect: port out of range" 1 "invalid port" "$M" cert inspect --connect 127.0.0.1:99999

# A server that requires client certificates: --cert/--key present one.
start_tls_server needs-client srv "${mtls_server_args[@]}"
if [[ -n "$PORT" ]]; then
  check_output_contains "inspect --connect --cert/--key: connects to an mTLS server" "verified: chains to root CA" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem --cert cli/cert-chain.pem --key cli/key.pem
  expect_true "inspect --connect --cert/--key: the server verified meshid's client leaf" \
    wait_for_log_count needs-client.log "verify return:1" 3
  expect_true "inspect --connect --cert/--key: the server saw no error" \
    bash -c '! grep -qE "verify error|peer did not return" "$1"' _ needs-client.log
  check_fails_with "inspect --connect: --cert without --key" 1 "go together" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --cert cli/cert-chain.pem
  check_fails_with "inspect --connect: --cert and a key that does not match" 1 "" \
    "$M" cert inspect --connect "127.0.0.1:$PORT" --cert cli/cert-chain.pem --key srv/key.pem
fi
# The same server refuses meshid without a client certificate (shows the check above means something).
start_tls_server needs-client2 srv "${mtls_server_args[@]}"
if [[ -n "$PORT" ]]; then
  run "$M" cert inspect --connect "127.0.0.1:$PORT" --roots A/root-cert.pem --timeout-ms 3000
  expect_true "inspect --connect without --cert: the mTLS server rejects it" \
    wait_for_log needs-client2.log "peer did not return a certificate"
fi

# Hostile peers: a TCP server that never speaks, one that answers in plain text,
# and one that starts a TLS record and then drips a byte every 200 ms.
cat >fake-server.js <<'EOF'
const net = require("net");
const mode = process.argv[2];
const server = net.createServer((sock) => {
  sock.on("error", () => {});
  if (mode === "garbage") sock.end("HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all\n");
  if (mode === "drip") {
    sock.write(Buffer.from([0x16, 0x03, 0x03, 0x40, 0x00]));  // handshake record, 16 KiB long
    const t = setInterval(() => sock.write(Buffer.from([0x00])), 200);
    sock.on("close", () => clearInterval(t));
  }
});
server.listen(0, "127.0.0.1", () => console.log("ACCEPT 127.0.0.1:" + server.address().port));
process.on("SIGTERM", () => process.exit(0));
EOF
if command -v node >/dev/null; then
  start_server silent.log node fake-server.js silent
  port=$(wait_for_accept silent.log)
  start=$SECONDS
  check_fails_with "inspect --connect: a peer that never answers times out cleanly" 1 "handshake" \
    "$M" cert inspect --connect "127.0.0.1:$port" --timeout-ms 1000
  expect_true "inspect --connect: ... within the timeout (took $((SECONDS - start)) s)" test $((SECONDS - start)) -le 3
  CMD_TIMEOUT=2 check_exit "inspect --connect --timeout-ms 0 hangs on a silent peer (want exit 1 or 2, not a hang)" "1|2" \
    "$M" cert inspect --connect "127.0.0.1:$port" --timeout-ms 0
  CMD_TIMEOUT=2 check_exit "inspect --connect --timeout-ms -1 hangs on a silent peer (want exit 1 or 2, not a hang)" "1|2" \
    "$M" cert inspect --connect "127.0.0.1:$port" --timeout-ms -1
  start_server garbage.log node fake-server.js garbage
  port=$(wait_for_accept garbage.log)
  check_fails_with "inspect --connect: a peer that is not TLS fails the handshake" 1 "handshake" \
    "$M" cert inspect --connect "127.0.0.1:$port" --timeout-ms 2000
  start_server drip.log node fake-server.js drip
  port=$(wait_for_accept drip.log)
  CMD_TIMEOUT=3 check_exit "inspect --connect --timeout-ms 1000 does not bound the handshake: a peer dripping bytes holds it forever" 1 \
    "$M" cert inspect --connect "127.0.0.1:$port" --timeout-ms 1000
else
  echo "note: node not found; skipped the hostile-peer checks"
fi

finish
