#!/usr/bin/env bash
# The proxy's own TLS 1.3 record layer (src/proxy/tls13_stream.h) against
# real peers: openssl s_client sending KeyUpdate (with and without a
# request) to an inbound listener, openssl s_server sending one behind an
# outbound listener, data both ways before and after each; a peer that sends
# a forged record after the handshake gets the bad_record_mac alert and the
# proxy serves the next connection; TLS 1.2 stays with OpenSSL; with
# `tls.record_layer: openssl` nothing moves and a busy connection keeps
# OpenSSL's buffers (tls.kept_buffers) until it is quiet.
#   bash tests/integration/proxy_record_layer_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
cd "$TMP" || exit 2
SERVER_LIFETIME=60
TD=example.org
M=$MESHID

"$M" ca init --trust-domain $TD --out ca >/dev/null
issue() { "$M" cert issue --ca ca --spiffe-id "$1" --out "$2" --ttl 1h >/dev/null; }
issue spiffe://$TD/ns/web/sa/web server
issue spiffe://$TD/ns/shop/sa/client client
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ECHO=$(free_port)
start_server echo.log python3 -c "
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d: return
            self.request.sendall(d)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('127.0.0.1', $ECHO), Echo).serve_forever()"
wait_port() {
  for ((i = 0; i < 100; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
wait_port "$ECHO"

cat >proxy.yaml <<YAML
trust_domain: $TD
certificates: {cert_file: server/cert-chain.pem, key_file: server/key.pem, bundle_file: ca/root-cert.pem}
admin_listen: 127.0.0.1:0
workers: 1
inbound:
  - {name: echo, listen: 127.0.0.1:0, forward: 127.0.0.1:$ECHO}
YAML
start_server proxy.log "${PROXY[@]}" --config proxy.yaml --log-level debug
wait_for_log proxy.log "meshid proxy running" || { cat proxy.log; finish; }
port_of() { grep -oE "$1=[a-z]+(:[A-Z]+)?:[0-9]+" "${2:-proxy.log}" | grep -oE '[0-9]+$'; }
PORT=$(port_of echo)
ADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' proxy.log | cut -d: -f2)
stat() { curl -s "http://127.0.0.1:$1/stats" | jq -r ".listeners.$2$3"; }

# openssl s_client: "K" sends a KeyUpdate asking for ours, "k" one that does not.
{
  echo "ping-before-7f3a"; sleep 0.5
  echo K; sleep 0.5
  echo "ping-after-K-7f3a"; sleep 0.5
  echo k; sleep 0.5
  echo "ping-after-k-7f3a"; sleep 0.5
} | timeout 20 openssl s_client -msg -connect "127.0.0.1:$PORT" -tls1_3 -cert client/cert-chain.pem -cert_chain client/cert-chain.pem \
  -key client/key.pem -CAfile ca/root-cert.pem >s_client.out 2>&1
for line in ping-before-7f3a ping-after-K-7f3a ping-after-k-7f3a; do
  expect_eq "s_client: $line comes back through the record layer" 1 \
    "$(grep -c "^$line\$" s_client.out)"
done
expect_eq "s_client sent two KeyUpdates" 2 "$(grep -c '^>>> .*KeyUpdate' s_client.out)"
expect_eq "the proxy answered the one that asked for it" 1 \
  "$(grep -c '^<<< .*KeyUpdate' s_client.out)"
expect_eq "the connection's records moved to the record layer" 1 \
  "$(stat "$ADMIN" echo .record_layer_connections)"

# A forged record after the handshake: the proxy answers bad_record_mac and
# closes; the next connection is served.
cat >forge.py <<'PY'
import os, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False
ctx.load_verify_locations("ca/root-cert.pem")
ctx.load_cert_chain("client/cert-chain.pem", "client/key.pem")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5))
s.sendall(b"honest")
assert s.recv(100) == b"honest"
if sys.argv[2] == "forge":
    os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + bytes(32))  # around TLS: a record that cannot authenticate
    try:
        print("read:", s.recv(100))
    except ssl.SSLError as e:
        print("alert:", e.reason)
else:
    print("served")
PY
check_output_contains "a forged record: the proxy sends bad_record_mac" \
  "alert: SSLV3_ALERT_BAD_RECORD_MAC" timeout 10 python3 forge.py "$PORT" forge
check_output_contains "and serves the next connection" "served" timeout 10 python3 forge.py "$PORT" ok
check_output_contains "the reason is logged (debug)" "did not authenticate" cat proxy.log

before=$(stat "$ADMIN" echo .record_layer_connections)
check_output_contains "TLS 1.2 works" "Verify return code: 0" \
  sh -c "echo | timeout 10 openssl s_client -connect 127.0.0.1:$PORT -tls1_2 -cert client/cert-chain.pem -cert_chain client/cert-chain.pem -key client/key.pem -CAfile ca/root-cert.pem"
expect_eq "and stays with OpenSSL" "$before" "$(stat "$ADMIN" echo .record_layer_connections)"

# Outbound: openssl s_server sends data, then a KeyUpdate asking for ours
# ("K" on its stdin), then more; the proxy's client side answers it and
# goes on in both directions.
SPORT=$(free_port)
mkfifo s_server.in
exec 7<>s_server.in
start_server s_server.log sh -c "exec openssl s_server -msg -accept 127.0.0.1:$SPORT -tls1_3 -Verify 2 \
  -verify_return_error -cert server/cert-chain.pem -cert_chain server/cert-chain.pem \
  -key server/key.pem -CAfile ca/root-cert.pem <s_server.in"
wait_for_accept s_server.log >/dev/null
cat >client.yaml <<YAML
trust_domain: $TD
certificates: {cert_file: client/cert-chain.pem, key_file: client/key.pem, bundle_file: ca/root-cert.pem}
admin_listen: 127.0.0.1:0
workers: 1
outbound:
  - {name: sserver, listen: 127.0.0.1:0, destination: 127.0.0.1:$SPORT,
     expected_ids: [spiffe://$TD/ns/web/sa/web]}
YAML
start_server client.log "${PROXY[@]}" --config client.yaml --log-level debug
wait_for_log client.log "meshid proxy running" || { cat client.log; finish; }
CADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' client.log | cut -d: -f2)
cat >outbound.py <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
def expect(token):
    got = b""
    while token not in got:
        d = s.recv(4096)
        if not d:
            sys.exit(f"closed before {token!r}; got {got!r}")
        got += d
    print("got", token.decode())
s.sendall(b"c-one-7f3a\n")
with open("s_server.in", "w") as fifo:
    time.sleep(0.5); fifo.write("s-zero-7f3a\n"); fifo.flush()
    expect(b"s-zero-7f3a")
    s.sendall(b"c-two-7f3a\n")  # the records move to the record layer here
    time.sleep(0.5); fifo.write("K\n"); fifo.flush()
    time.sleep(0.5); fifo.write("s-three-7f3a\n"); fifo.flush()
    expect(b"s-three-7f3a")
    s.sendall(b"c-four-7f3a\n")
    time.sleep(0.5)
print("done")
PY
timeout 20 python3 outbound.py "$(port_of sserver client.log)" >outbound.out 2>&1
cat outbound.out
expect_eq "outbound: the client got both of s_server's lines" "got s-zero-7f3a got s-three-7f3a done" \
  "$(tr '\n' ' ' <outbound.out | sed 's/ $//')"
for line in c-one-7f3a c-two-7f3a c-four-7f3a; do
  expect_eq "outbound: s_server got $line" 1 "$(grep -c "^$line\$" s_server.log)"
done
expect_eq "s_server sent its KeyUpdate" 1 "$(grep -c '^>>> .*KeyUpdate' s_server.log)"
expect_eq "and the proxy's client side answered it" 1 "$(grep -c '^<<< .*KeyUpdate' s_server.log)"
expect_eq "outbound: the connection's records moved to the record layer" 1 \
  "$(stat "$CADMIN" sserver .record_layer_connections)"
exec 7>&-

# record_layer: openssl: nothing moves; a busy connection keeps OpenSSL's
# buffers and gives them back after a quiet second.
sed 's/^workers: 1$/workers: 1\ntls: {record_layer: openssl}/' proxy.yaml >openssl.yaml
start_server openssl.log "${PROXY[@]}" --config openssl.yaml
wait_for_log openssl.log "meshid proxy running" || { cat openssl.log; finish; }
OADMIN=$(grep -oE 'admin=127\.0\.0\.1:[0-9]+' openssl.log | cut -d: -f2)
cat >keepalive.py <<'PY'
import json, socket, ssl, sys, time, urllib.request
port, admin = int(sys.argv[1]), sys.argv[2]
def kept():
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5) as r:
        t = json.load(r)["tls_buffers"]
    return f"{int(t['kept'])}/{int(t['released'])}"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations("ca/root-cert.pem")
ctx.load_cert_chain("client/cert-chain.pem", "client/key.pem")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
def echo(i):
    msg = b"%08d" % i * 8
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += s.recv(65536)
    assert got == msg, (got, msg)
for i in range(40):
    echo(i)
print("busy", kept())
time.sleep(2.6)
print("quiet", kept())
for i in range(3):
    echo(i)
print("again ok")
PY
ka=$(timeout 20 python3 keepalive.py "$(port_of echo openssl.log)" "$OADMIN" 2>&1)
echo "$ka"
expect_eq "record_layer: openssl: a busy connection keeps OpenSSL's buffers (kept/released)" \
  "busy 1/0" "$(grep '^busy' <<<"$ka")"
expect_eq "quiet for a second, it gives them back" "quiet 0/1" "$(grep '^quiet' <<<"$ka")"
expect_eq "and the connection goes on" "again ok" "$(grep '^again' <<<"$ka")"
expect_eq "no connection moved to the record layer" 0 \
  "$(stat "$OADMIN" echo .record_layer_connections)"
finish
