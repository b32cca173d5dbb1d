#!/usr/bin/env node
// A scripted SDS server (Envoy's SecretDiscoveryService, PROTOCOLS.md §2) for
// testing an SDS *client*: it plays a fixed sequence of responses, some of
// them bad on purpose, and records exactly what the client sent back. The
// real agent never sends a bad secret, so the NACK path needs this peer.
// Written from the wire facts, not from meshid's C++ code.
//
//   node sds_server_script.js --socket PATH --dir DIR --duration-ms N
//
// DIR holds good/{cert-chain.pem,key.pem,root-cert.pem} and
// mismatch/key.pem (a key that does not belong to good's certificate).
// Steps, on the first stream:
//   1. wait for the first request; then send v1 = default (good chain with
//      the MISMATCHED key) + ROOTCA. Expect a NACK.
//   2. send v2 = default (good) + ROOTCA (good). Expect an ACK of v2.
//   3. send v3 = ROOTCA alone (same roots). Expect an ACK of v3.
//   4. send v4 = a secret named "surprise" (not asked for). Expect a NACK
//      naming the last accepted version, v3.
//   5. end the stream with UNAVAILABLE.
// On the second stream (the client must come back by itself): send v5 = the
// good pair, expect an ACK. The new stream's first request carries the
// last accepted version (v3) and an empty nonce, as Envoy's does. Then hold the stream until --duration-ms.
// Prints one JSON line: {"streams":N, "requests":[...], "ok":bool, "why":"..."}
// where each request is {stream, version_info, response_nonce, names,
// has_node, error_code, error_message}.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const { loadSdsProtos } = require('./sds_protos');

const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
  return o;
}
const opts = parseArgs(process.argv.slice(2));
const read = (p) => fs.readFileSync(path.join(opts.dir, p), 'utf8');

const { Sds, Secret } = loadSdsProtos();

function any(secret) {
  return { type_url: SECRET_TYPE, value: Secret.encode(Secret.fromObject(secret)).finish() };
}
const certSecret = (key) => any({
  name: 'default',
  tls_certificate: {
    certificate_chain: { inline_bytes: Buffer.from(read('good/cert-chain.pem')) },
    private_key: { inline_bytes: Buffer.from(key) },
  },
});
const rootSecret = () => any({
  name: 'ROOTCA',
  validation_context: { trusted_ca: { inline_bytes: Buffer.from(read('good/root-cert.pem')) } },
});
const response = (version, resources) =>
  ({ version_info: version, resources, type_url: SECRET_TYPE, nonce: `nonce-${version}` });

const requests = [];
let streams = 0;
const server = new grpc.Server();
server.addService(Sds.service, {
  StreamSecrets(call) {
    const stream = ++streams;
    let seen = 0;
    call.on('data', (req) => {
      requests.push({
        stream, version_info: req.version_info, response_nonce: req.response_nonce,
        names: req.resource_names, has_node: !!req.node && req.node.id !== '',
        error_code: req.error_detail ? req.error_detail.code : null,
        error_message: req.error_detail ? req.error_detail.message : null,
      });
      seen++;
      if (stream === 1) {
        if (seen === 1) call.write(response('v1', [certSecret(read('mismatch/key.pem')), rootSecret()]));
        else if (seen === 2) call.write(response('v2', [certSecret(read('good/key.pem')), rootSecret()]));
        else if (seen === 3) call.write(response('v3', [rootSecret()]));
        else if (seen === 4) call.write(response('v4', [any({ name: 'surprise', validation_context: {} })]));
        else if (seen === 5) call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'scripted end' });
      } else if (stream === 2 && seen === 1) {
        call.write(response('v5', [certSecret(read('good/key.pem')), rootSecret()]));
      }
    });
    call.on('error', () => {});
  },
  FetchSecrets(call, cb) { cb({ code: grpc.status.UNIMPLEMENTED }); },
  DeltaSecrets(call) { call.destroy({ code: grpc.status.UNIMPLEMENTED }); },
});

function judge() {
  const want = [
    // [stream, version_info, nonce, nack?]
    [1, '', '', false],  // the first request
    [1, '', 'nonce-v1', true],
    [1, 'v2', 'nonce-v2', false],
    [1, 'v3', 'nonce-v3', false],
    [1, 'v3', 'nonce-v4', true],
    [2, 'v3', '', false],  // a new stream: the version it holds, an empty nonce
    [2, 'v5', 'nonce-v5', false],
  ];
  for (let i = 0; i < want.length; i++) {
    const r = requests[i];
    const [stream, version, nonce, nack] = want[i];
    if (!r) return `request ${i + 1} never came`;
    if (r.stream !== stream) return `request ${i + 1} on stream ${r.stream}, expected ${stream}`;
    if (version !== null && r.version_info !== version)
      return `request ${i + 1}: version_info "${r.version_info}", expected "${version}"`;
    if (r.response_nonce !== nonce) return `request ${i + 1}: nonce "${r.response_nonce}", expected "${nonce}"`;
    if (nack !== (r.error_code !== null)) return `request ${i + 1}: ${nack ? 'expected a NACK' : 'unexpected NACK'}`;
    if (nack && r.error_code !== 3) return `request ${i + 1}: NACK code ${r.error_code}, expected 3`;
    if (r.names.join(',') !== 'default,ROOTCA') return `request ${i + 1}: names ${r.names}`;
    const first = i === 0 || i === 5;
    if (r.has_node !== first) return `request ${i + 1}: node ${r.has_node ? 'sent' : 'missing'}`;
  }
  return null;
}

fs.rmSync(opts.socket, { force: true });
server.bindAsync(`unix:${opts.socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.log(JSON.stringify({ ok: false, why: `bind: ${err.message}` })); process.exit(1); }
  server.start();
  console.error('listening');
  setTimeout(() => {
    const why = judge();
    console.log(JSON.stringify({ ok: why === null, why, streams, requests }));
    server.forceShutdown();
    process.exit(0);
  }, Number(opts['duration-ms'] || 5000));
});
