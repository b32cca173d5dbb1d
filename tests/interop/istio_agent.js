#!/usr/bin/env node
// Calls a CA the way Istio's agent does (PROTOCOLS.md §1), written from the
// wire facts and not from meshid's C++ code:
//   - TLS to the CA, verifying its serving certificate against --root (the mesh
//     root); a client certificate only with --client-cert/--client-key (Istio's
//     PROV_CERT renewal);
//   - gRPC metadata `authorization: Bearer <token>` with the token re-read from
//     --token-file on every call (the agent re-reads its projected token), and
//     `clusterid: Kubernetes`;
//   - IstioCertificateService/CreateCertificate {csr: PEM, validity_duration,
//     metadata: {CertSigner: ""}}, deadline 10 s;
//   - the checks Istio's agent makes on the answer: at least two elements, the
//     leaf first (not a CA), the last element holding the root(s).
//
//   node istio_agent.js --addr 127.0.0.1:PORT --root root.pem [--token-file F]
//       [--csr csr.pem] [--ttl 86400] [--api istio|meshid] [--call sign|bundle]
//       [--client-cert chain.pem --client-key key.pem] [--server-name NAME]
//       [--authorization 'RAW HEADER VALUE'] [--cluster-id Kubernetes]
//   node istio_agent.js --batch FILE [defaults as above]
//       one call per line of FILE (a JSON array of the arguments above), in
//       order, each with its own new connection and token read; prints one
//       result line per call; exit 0 when every call ran (whatever its answer).
//   node istio_agent.js --make-csr SPIFFE_ID --csr-out F --key-out F [--key-type rsa|ec]
//       writes a key and a CSR in exactly the shape Istio's agent makes (Go's
//       x509.CreateCertificateRequest, Subject O="", critical URI SAN).
//
// --api meshid calls meshid.v1.MeshCA/Sign {csr: bytes, ttl_seconds}; its
// cert_chain holds leaf + intermediates and the roots come in `bundle`, so the
// printed chain is cert_chain followed by the bundle's roots as one PEM string,
// and the same chain checks apply. --call bundle calls MeshCA/GetTrustBundle.
//
// Prints one JSON line:
//   {"ok":true,"chain":[PEM,...]}            (meshid Sign adds spiffe_id, serial,
//                                             not_after_unix, bundle_sha256)
//   {"ok":true,"roots":[PEM,...],"sha256":...,"version":...,"trust_domain":...}  (bundle)
//   {"ok":false,"code":<gRPC code>,"details":"..."}   exit 3
//   {"ok":false,"code":-1,"details":"..."}   the answer failed the agent's checks; exit 3
// Exit 0 on ok, 3 on a gRPC error or a bad answer, 1 on a harness error.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
// gRPC is loaded only for calls (not for --make-csr).
let grpc;

const DEADLINE_MS = 10000;
// grpc-js sets the TLS ServerName to an IP target (node warns, RFC 6066); the
// certificate is still checked against the IP SAN. Keep stderr for real errors.
process.noDeprecation = true;

function harnessError(msg) {
  process.stderr.write(`istio_agent: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || i + 1 >= argv.length) harnessError(`bad argument ${a}`);
    opts[a.slice(2)] = argv[++i];
  }
  return opts;
}

function readFile(p, what) {
  try {
    return fs.readFileSync(p);
  } catch (e) {
    return harnessError(`cannot read ${what} ${p}: ${e.message}`);
  }
}

function splitPem(text) {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) || [];
}

// What Istio's agent checks before it uses a chain, plus "the leaf is not a CA"
// and "the last element is only self-signed CA certificates". Returns an error
// string or null.
function checkChain(chain) {
  if (!Array.isArray(chain) || chain.length < 2) {
    return `cert_chain has ${chain ? chain.length : 0} elements, Istio's agent needs at least 2`;
  }
  const parsed = [];
  for (let i = 0; i < chain.length; i++) {
    const pems = splitPem(chain[i]);
    if (pems.length === 0) return `cert_chain[${i}] holds no PEM certificate`;
    if (i < chain.length - 1 && pems.length !== 1) {
      return `cert_chain[${i}] holds ${pems.length} certificates, expected one`;
    }
    try {
      parsed.push(pems.map((p) => new crypto.X509Certificate(p)));
    } catch (e) {
      return `cert_chain[${i}] does not parse: ${e.message}`;
    }
  }
  if (parsed[0][0].ca) return 'cert_chain[0] (the leaf) is a CA certificate';
  for (let i = 1; i < parsed.length - 1; i++) {
    if (!parsed[i][0].ca) return `cert_chain[${i}] (an intermediate) is not a CA certificate`;
  }
  for (const root of parsed[parsed.length - 1]) {
    if (!root.ca) return 'the last cert_chain element holds a certificate that is not a CA';
    if (!root.checkIssued(root) || !root.verify(root.publicKey)) {
      return 'the last cert_chain element holds a certificate that is not self-signed (not a root)';
    }
  }
  return null;
}

// --- CSRs as Istio's agent makes them -------------------------------------
// The agent builds its CSR with Go's x509.CreateCertificateRequest from
// Istio's GenCSRTemplate: Subject {Organization: [""]} (an O attribute with an
// empty PrintableString, which `openssl req` cannot produce), the SPIFFE ID as
// a critical URI SAN in an extensionRequest attribute, RSA-2048 (SHA256WithRSA)
// by default or ECDSA P-256 (ECDSAWithSHA256). This DER is written by hand so
// the CA's CSR parser sees exactly that shape.
function derLen(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function tlv(tag, ...parts) {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLen(body.length), body]);
}
function oid(dotted) {
  const arcs = dotted.split('.').map(Number);
  const out = [40 * arcs[0] + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const b = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) b.unshift(0x80 | (v & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}
function makeCsr(spiffeId, keyType) {
  const { privateKey, publicKey } = keyType === 'ec'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const SEQ = 0x30, SET = 0x31;
  const subject = tlv(SEQ, tlv(SET, tlv(SEQ, oid('2.5.4.10'), tlv(0x13, Buffer.alloc(0)))));
  const san = tlv(SEQ, tlv(0x86, Buffer.from(spiffeId, 'ascii')));
  const extensions = tlv(SEQ, tlv(SEQ, oid('2.5.29.17'), tlv(0x01, Buffer.from([0xff])), tlv(0x04, san)));
  const attributes = tlv(0xa0, tlv(SEQ, oid('1.2.840.113549.1.9.14'), tlv(SET, extensions)));
  const info = tlv(SEQ, tlv(0x02, Buffer.from([0])), subject,
                   publicKey.export({ type: 'spki', format: 'der' }), attributes);
  const sigAlg = keyType === 'ec'
      ? tlv(SEQ, oid('1.2.840.10045.4.3.2'))
      : tlv(SEQ, oid('1.2.840.113549.1.1.11'), tlv(0x05, Buffer.alloc(0)));
  const signature = crypto.sign('sha256', info, privateKey);  // DER ECDSA-Sig-Value for EC
  const der = tlv(SEQ, info, sigAlg, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').match(/.{1,64}/g).join('\n');
  return {
    csr: `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
  };
}

function loadProtos(protoDir) {
  grpc = require('@grpc/grpc-js');
  const loader = require('@grpc/proto-loader');
  const def = loader.loadSync(
      [path.join(protoDir, 'istio/v1/auth/ca.proto'), path.join(protoDir, 'meshid/v1/ca.proto')],
      { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
        includeDirs: [protoDir] });
  return grpc.loadPackageDefinition(def);
}

// One call as the agent makes it: a new channel (new TCP + TLS connection),
// the token file read again, a 10 s deadline. Resolves to the JSON result.
function callOnce(o, pkg) {
  const api = o.api || 'istio';
  const call = o.call || 'sign';
  if (!['istio', 'meshid'].includes(api)) harnessError('--api is istio or meshid');
  if (!['sign', 'bundle'].includes(call)) harnessError('--call is sign or bundle');
  if (!o.addr || !o.root) harnessError('--addr and --root are required');
  if (call === 'sign' && !o.csr) harnessError('--csr is required for --call sign');
  if (!!o['client-cert'] !== !!o['client-key']) harnessError('give both --client-cert and --client-key');
  // int64 on the wire: a decimal string keeps values beyond 2^53 exact (long.js).
  const ttl = o.ttl === undefined ? '86400' : String(o.ttl);
  if (!/^-?\d+$/.test(ttl)) harnessError('--ttl must be an integer');

  const creds = o['client-cert']
      ? grpc.credentials.createSsl(readFile(o.root, 'root'), readFile(o['client-key'], 'client key'),
                                   readFile(o['client-cert'], 'client certificate'))
      : grpc.credentials.createSsl(readFile(o.root, 'root'));
  // A private subchannel pool: every call opens its own connection, as a
  // fresh agent process would, instead of sharing one with an earlier call.
  const channelOpts = { 'grpc.use_local_subchannel_pool': 1 };
  if (o['server-name']) channelOpts['grpc.ssl_target_name_override'] = o['server-name'];

  const md = new grpc.Metadata();
  md.set('clusterid', o['cluster-id'] || 'Kubernetes');
  if (o.authorization !== undefined) {
    md.set('authorization', o.authorization);
  } else if (o['token-file']) {
    // Re-read on every call, as the agent does with its projected token.
    const token = readFile(o['token-file'], 'token').toString('utf8').trim();
    md.set('authorization', `Bearer ${token}`);
  }
  const deadline = { deadline: Date.now() + DEADLINE_MS };
  const client = api === 'istio' && call === 'sign'
      ? new pkg.istio.v1.auth.IstioCertificateService(o.addr, creds, channelOpts)
      : new pkg.meshid.v1.MeshCA(o.addr, creds, channelOpts);

  return new Promise((resolve) => {
    const done = (err, result) => {
      client.close();
      if (err) return resolve({ ok: false, code: err.code, details: err.details || err.message });
      if (result.chain) {
        const bad = checkChain(result.chain);
        if (bad) return resolve({ ok: false, code: -1, details: bad });
      }
      resolve({ ok: true, ...result });
    };
    if (call === 'bundle') {
      client.GetTrustBundle({}, md, deadline, (err, b) => {
        if (err) return done(err);
        done(null, { roots: b.roots, sha256: b.sha256, version: b.version, trust_domain: b.trust_domain });
      });
      return;
    }
    const csr = readFile(o.csr, 'CSR');
    if (api === 'istio') {
      const request = {
        csr: csr.toString('utf8'),
        validity_duration: ttl,
        metadata: { fields: { CertSigner: { string_value: '' } } },
      };
      client.CreateCertificate(request, md, deadline, (err, r) => {
        if (err) return done(err);
        done(null, { chain: r.cert_chain });
      });
    } else {
      client.Sign({ csr, ttl_seconds: ttl }, md, deadline, (err, r) => {
        if (err) return done(err);
        const roots = (r.bundle && r.bundle.roots) || [];
        done(null, {
          chain: [...r.cert_chain, roots.join('')],
          spiffe_id: r.spiffe_id,
          serial: r.serial,
          not_after_unix: r.not_after_unix,
          bundle_sha256: r.bundle ? r.bundle.sha256 : '',
        });
      });
    }
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o['make-csr']) {
    if (!o['csr-out'] || !o['key-out']) harnessError('--make-csr needs --csr-out and --key-out');
    const kt = o['key-type'] || 'rsa';
    if (!['rsa', 'ec'].includes(kt)) harnessError('--key-type is rsa or ec');
    const made = makeCsr(o['make-csr'], kt);
    fs.writeFileSync(o['key-out'], made.key, { mode: 0o600 });
    fs.writeFileSync(o['csr-out'], made.csr);
    process.stdout.write(JSON.stringify({ ok: true }) + '\n');
    return 0;
  }
  const pkg = loadProtos(o['proto-dir'] || path.join(__dirname, '..', '..', 'proto'));
  if (o.batch) {
    // One call per line, in order, each on its own new connection; the
    // options on the command line are defaults for every line.
    const { batch, ...defaults } = o;
    const lines = readFile(batch, 'batch file').toString('utf8').split('\n').filter((l) => l.trim());
    for (const line of lines) {
      let args;
      try {
        args = JSON.parse(line);
      } catch (e) {
        harnessError(`batch line is not a JSON array of arguments: ${line}`);
      }
      const result = await callOnce({ ...defaults, ...parseArgs(args) }, pkg);
      process.stdout.write(JSON.stringify(result) + '\n');
    }
    return 0;
  }
  const result = await callOnce(o, pkg);
  process.stdout.write(JSON.stringify(result) + '\n');
  return result.ok ? 0 : 3;
}

main().then((code) => process.exit(code), (e) => harnessError(e.stack || String(e)));
