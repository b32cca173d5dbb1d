#!/usr/bin/env bash
# nginx (Debian's) serving mutual TLS from the agent's file sink, reloaded by
# the agent (SIGHUP from the sink's pid-file hook) at every rotation, while
# for 30 s clients make a new connection per request (TESTING.md §2):
#   - curl with another identity's files from the same agent (the combined
#     key+chain file, so key and certificate always match);
#   - openssl s_client verifying nginx's chain against the bundle file, which
#     records the server serial each handshake saw.
# Certificates live 6 s. Zero failures of either loop; at least 4 distinct
# server and client serials seen.
#   bash tests/integration/agent_nginx_test.sh build/meshid
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/agent_lib.sh"
cd "$TMP" || exit 2
SERVER_LIFETIME=80
NGINX_ID=spiffe://$TD/ns/files/sa/nginx
CLIENT_ID=spiffe://$TD/ns/client/sa/curl
LOOP_S=30

if ! command -v nginx >/dev/null; then
  echo "FAIL: nginx is not installed (scripts/deps.sh installs it)"
  exit 1
fi

write_ca_config 0
start_ca ca.log || finish
"$MESHID" token create --config ca.yaml --spiffe-id "$AGENT_ID" >join.token 2>/dev/null
PORT=$(free_port)

cat >agent.yaml <<YAML
trust_domain: $TD
ca: {addresses: [127.0.0.1:$GRPC], root_file: $ROOT}
credentials: {join_token_file: join.token, agent_id: $AGENT_ID}
state_dir: agent-state
admin_listen: 127.0.0.1:0
rotation: {ttl: 6s, agent_ttl: 1h, initial_backoff: 200ms, max_backoff: 1s}
entries:
  - spiffe_id: $NGINX_ID
    file_sink: {dir: server, signal_pid_file: nginx.pid, signal: HUP}
  - spiffe_id: $CLIENT_ID
    file_sink: {dir: client, combined_file: tls.pem}
YAML
start_agent agent.log agent.yaml || finish
expect_true "agent wrote both file sinks" wait_ready 10

mkdir -p nginx-tmp
cat >nginx.conf <<CONF
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log notice;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log $TMP/access.log;
  client_body_temp_path $TMP/nginx-tmp/body;
  proxy_temp_path $TMP/nginx-tmp/proxy;
  fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
  uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
  scgi_temp_path $TMP/nginx-tmp/scgi;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $TMP/server/cert-chain.pem;
    ssl_certificate_key $TMP/server/key.pem;
    ssl_client_certificate $TMP/server/root-cert.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "client \$ssl_client_serial\n"; }
  }
}
CONF
start_server nginx.log nginx -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf"
NGINX_PID=$LAST_SERVER_PID
for ((i = 0; i < 100; i++)); do
  curl -s -k -o /dev/null "https://127.0.0.1:$PORT/" 2>/dev/null
  [[ $? -ne 7 ]] && break  # 7: connection refused (not listening yet)
  sleep 0.05
done
# Hooks that ran before nginx existed failed (no pid file): logged, counted,
# not fatal. From here on none may fail.
failed_before=$(metric_value 'meshid_agent_reload_hooks_total{result="failed"}')
expect_true "a hook failing (no nginx yet) was counted, not fatal" test "${failed_before%.*}" -ge 1

# Loop 1: curl, a new connection per request, with the client identity's file.
# The server's certificate carries a SPIFFE ID and no DNS name, which curl
# cannot check (-k); loop 2 verifies the server chain instead.
curl_loop() {
  local end=$((SECONDS + LOOP_S)) ok=0 bad=0 body rc
  while ((SECONDS < end)); do
    # curl opens --cert twice (certificate, then key): a rotation between the
    # two would pair an old certificate with a new key. One read of the
    # combined file (one rename on the agent's side) is always consistent.
    cp client/tls.pem curl-identity.pem
    body=$(curl -sS -k --max-time 5 --cert curl-identity.pem "https://127.0.0.1:$PORT/" 2>curl.err)
    rc=$?
    if [[ $rc -eq 0 && $body == client\ * ]]; then
      ok=$((ok + 1))
      echo "${body#client }" >>client-serials.txt
    else
      bad=$((bad + 1))
      echo "$(date +%T.%3N) curl failed: rc=$rc body=$body error=$(cat curl.err)" >>curl-failures.txt
    fi
  done
  echo "$ok $bad" >curl-result.txt
}
# Loop 2: openssl s_client with the client identity, verifying nginx's chain
# against the bundle file; records the server serial of each handshake.
openssl_loop() {
  local end=$((SECONDS + LOOP_S)) ok=0 bad=0 out
  while ((SECONDS < end)); do
    cp client/tls.pem openssl-identity.pem  # one consistent read, as for curl
    if out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -quiet \
      -connect "127.0.0.1:$PORT" -cert openssl-identity.pem -cert_chain openssl-identity.pem \
      -CAfile client/root-cert.pem \
      -verify_return_error -showcerts 2>&1) && [[ $out == *"client "* ]]; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      echo "$out" | tail -3 >>openssl-failures.txt
    fi
    sleep 0.1
  done
  echo "$ok $bad" >openssl-result.txt
}
server_serial_loop() {  # what nginx presents, sampled every 0.2 s
  local end=$((SECONDS + LOOP_S))
  while ((SECONDS < end)); do
    cp client/tls.pem sampler-identity.pem
    openssl s_client -connect "127.0.0.1:$PORT" -cert sampler-identity.pem </dev/null 2>/dev/null |
      openssl x509 -noout -serial 2>/dev/null >>server-serials.txt
    sleep 0.2
  done
}
curl_loop &
c=$!
openssl_loop &
o=$!
server_serial_loop &
s=$!
wait $c $o $s

read -r curl_ok curl_bad <curl-result.txt
read -r ossl_ok ossl_bad <openssl-result.txt
echo "info: curl $curl_ok ok / $curl_bad failed; openssl $ossl_ok ok / $ossl_bad failed"
expect_true "curl made requests ($curl_ok)" test "$curl_ok" -ge 50
expect_eq "curl: zero failures through rotations" "0" "$curl_bad"
[[ $curl_bad -eq 0 ]] || head -5 curl-failures.txt
expect_true "openssl made handshakes ($ossl_ok)" test "$ossl_ok" -ge 20
expect_eq "openssl (server chain verified against the bundle): zero failures" "0" "$ossl_bad"
[[ $ossl_bad -eq 0 ]] || head -9 openssl-failures.txt
n=$(sort -u server-serials.txt | wc -l)
expect_true "nginx presented at least 4 distinct certificates ($n)" test "$n" -ge 4
n=$(sort -u client-serials.txt | wc -l)
expect_true "nginx saw at least 4 distinct client certificates ($n)" test "$n" -ge 4
r=$(metric_value 'meshid_agent_reload_hooks_total{result="ok"}')
expect_true "the agent signalled nginx after each rotation ($r)" test "${r%.*}" -ge 8
expect_eq "no failed hook while nginx ran" "$failed_before" \
  "$(metric_value 'meshid_agent_reload_hooks_total{result="failed"}')"
expect_true "nginx reloaded (its log says so)" grep -q "reconfiguring" nginx-error.log
# The agent first: once nginx is gone its pid file may name a reused pid.
stop_server "$AGENT_PID"
stop_server "$NGINX_PID"
finish
