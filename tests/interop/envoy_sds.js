#!/usr/bin/env node
// Pulls certificates over SDS the way Envoy (as Istio runs it) does
// (PROTOCOLS.md §2), written from the wire facts and not from meshid's C++ code:
//   - gRPC over a Unix socket (target `unix:/path`), one channel;
//   - one StreamSecrets stream per resource name (Envoy makes one subscription
//     per SdsSecretConfig), `node` only in the first request of a stream,
//     type_url ...tls.v3.Secret, empty version_info and response_nonce;
//   - on each response Envoy's checks: exactly one Secret, named as asked (on
//     the multi stream: only asked names, each at most once); for a
//     tls_certificate the inline PEM chain and key must load into a TLS context
//     (node's tls.createSecureContext stands in for Envoy's BoringSSL), the key
//     must match the leaf and be RSA >= 2048 or ECDSA P-256/P-384/P-521; for a
//     validation_context trusted_ca must hold at least one certificate;
//   - ACK = {version_info of the response, response_nonce = its nonce};
//     NACK = {version_info = the previously accepted version, response_nonce,
//     error_detail {code 3 (INVALID_ARGUMENT), message}};
//   - a stream that fails with UNAVAILABLE is reopened after 200 ms with the
//     last accepted version_info and an EMPTY nonce (and `node` again, as in any
//     first request). Other codes end the stream (Envoy would retry them too;
//     the harness records them so a test can assert on them).
// On top of what Envoy enforces it asserts what a server owes Envoy (these are
// violations, but do not change the ACK): no resend of the content last ACKed
// or NACKed on a stream; a non-empty nonce; the leaf valid at receipt; every
// tls_certificate chain linked leaf -> intermediates -> a root of the latest
// ROOTCA bundle (when the ROOTCA stream is open; 1 s of grace for a bundle that
// is on its way on the other stream); no gap in which the held leaf had expired
// before the next one arrived, and the last one still valid at the end.
//
//   node envoy_sds.js --socket PATH --names default,ROOTCA --duration-ms 30000
//       [--node-id ID] [--cluster NAME] [--scenario NAME] [--events FILE]
//       [--expect response|none]            (scenario hold only)
//
// The resource type is inferred from the name, as Istio's proxies use them:
// ROOTCA and file-root:* are validation_context, every other name is a
// tls_certificate.
//
// Scenarios (each checks one rule; all but watch and hold run on every stream
// and stop early once decided, with --duration-ms as a cap):
//   watch         (default) hold the streams for --duration-ms with the checks
//                 above; a stream that never had a response is a violation.
//   stale-nonce   after the first response and its ACK, send a request with a
//                 made-up nonce the server never sent; no response may arrive
//                 within 1500 ms.
//   ack-no-reply  ACK the first response; nothing may arrive within 1500 ms
//                 (use a certificate that does not rotate meanwhile).
//   nack          NACK the first response; the same content must not come back
//                 within 2000 ms (different content is fine, and is checked).
//   multi         ONE stream asking for all --names in one request; its first
//                 response must carry exactly those Secrets, one each.
//   reconnect     after the first response and its ACK, cancel the stream and
//                 open a new one with the last version_info and an empty nonce;
//                 a response must arrive within 1000 ms.
//   hold          open the streams and wait for --duration-ms; report when (if)
//                 the first response came and how each stream ended. With
//                 --expect response every stream must have had a response, with
//                 --expect none no stream may have had one (an error is fine).
//
// Prints one JSON line:
//   {"ok":bool, "scenario":NAME, "scenario_passed":bool, "scenario_detail":"...",
//    "duration_ms":N,
//    "streams":{NAME: {"responses","acks","nacks","serials":[lowercase hex],
//                      "first_response_ms","reconnects","end_code","end_details"}},
//    "violations":["..."]}
// The multi stream is keyed by the names joined with ','. serials are the
// distinct leaves ACKed, in order. first_response_ms is measured from the
// harness start. end_code/end_details are the last gRPC status the stream
// ended with before the harness stopped (null if none; a stream reopened after
// UNAVAILABLE keeps 14 here, see reconnects). Each distinct violation is listed
// once, with "(N times)" when repeated.
// ok = no violations and the scenario passed. With --events FILE one JSON line
// per received Secret is appended: {unix_ms, t_ms, stream, name, version,
// nonce, action: ack|nack, serial, not_after} (serial/not_after for
// certificates; name null for a response with no resources).
// Exit 0 when ok, 3 when not ok, 1 on a harness error.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const tls = require('tls');
const grpc = require('@grpc/grpc-js');
const { loadSdsProtos } = require('./sds_protos');

const TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const RECONNECT_DELAY_MS = 200;
const CHAIN_GRACE_MS = 1000;   // for a leaf whose new root is still on its way on ROOTCA
const STALE_WINDOW_MS = 1500;
const ACK_WINDOW_MS = 1500;
const NACK_WINDOW_MS = 2000;
const RECONNECT_WINDOW_MS = 1000;
const SCENARIOS = ['watch', 'stale-nonce', 'ack-no-reply', 'nack', 'multi', 'reconnect', 'hold'];

function harnessError(msg) {
  process.stderr.write(`envoy_sds: ${msg}\n`);
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

// --- protos -----------------------------------------------------------------

// --- certificates -------------------------------------------------------------
function splitPem(text) {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) || [];
}

function timeMs(s) {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`cannot parse certificate time "${s}"`);
  return t;
}

function spkiDer(key) {
  return key.export({ type: 'spki', format: 'der' });
}

// The text of an inline DataSource, or an error string.
function inlineText(ds, what) {
  if (!ds || !ds.specifier) return { error: `${what} is not set` };
  if (ds.specifier === 'inline_bytes') return { text: Buffer.from(ds.inline_bytes).toString('utf8') };
  if (ds.specifier === 'inline_string') return { text: ds.inline_string };
  return { error: `${what} is ${ds.specifier}, not inline PEM` };
}

// Envoy loads RSA >= 2048 and ECDSA P-256/P-384/P-521 only.
function envoyKeyTypeError(pub) {
  const t = pub.asymmetricKeyType;
  const d = pub.asymmetricKeyDetails || {};
  if (t === 'rsa') return d.modulusLength >= 2048 ? null : `RSA key of ${d.modulusLength} bits (< 2048)`;
  if (t === 'ec') {
    return ['prime256v1', 'secp384r1', 'secp521r1'].includes(d.namedCurve)
        ? null : `ECDSA key on curve ${d.namedCurve}`;
  }
  return `${t} key (Envoy loads RSA and ECDSA only)`;
}

// What Envoy does with a tls_certificate. Returns {nack: reason} or the parsed
// {chain: [X509Certificate], leaf, serial, notBefore, notAfter}.
function checkTlsCertificate(tc) {
  const chainText = inlineText(tc.certificate_chain, 'certificate_chain');
  if (chainText.error) return { nack: chainText.error };
  const keyText = inlineText(tc.private_key, 'private_key');
  if (keyText.error) return { nack: keyText.error };
  try {
    tls.createSecureContext({ cert: chainText.text, key: keyText.text });
  } catch (e) {
    return { nack: `certificate_chain/private_key rejected by the TLS stack: ${e.message}` };
  }
  const pems = splitPem(chainText.text);
  if (pems.length === 0) return { nack: 'certificate_chain holds no PEM certificate' };
  let chain;
  try {
    chain = pems.map((p) => new crypto.X509Certificate(p));
  } catch (e) {
    return { nack: `certificate_chain does not parse: ${e.message}` };
  }
  const leaf = chain[0];
  let key;
  try {
    key = crypto.createPrivateKey(keyText.text);
  } catch (e) {
    return { nack: `private_key does not parse: ${e.message}` };
  }
  if (!spkiDer(crypto.createPublicKey(key)).equals(spkiDer(leaf.publicKey))) {
    return { nack: 'private_key does not match the leaf certificate' };
  }
  const keyErr = envoyKeyTypeError(leaf.publicKey);
  if (keyErr) return { nack: `Envoy does not load a ${keyErr}` };
  return {
    chain, leaf,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: timeMs(leaf.validFrom),
    notAfter: timeMs(leaf.validTo),
  };
}

// What Envoy does with a validation_context: trusted_ca must load.
function checkValidationContext(vc) {
  const t = inlineText(vc.trusted_ca, 'trusted_ca');
  if (t.error) return { nack: t.error };
  const pems = splitPem(t.text);
  if (pems.length === 0) return { nack: 'trusted_ca holds no PEM certificate' };
  let roots;
  try {
    roots = pems.map((p) => new crypto.X509Certificate(p));
  } catch (e) {
    return { nack: `trusted_ca does not parse: ${e.message}` };
  }
  const notCa = roots.filter((r) => !r.ca).map((r) => r.serialNumber.toLowerCase());
  return { roots, notCa };
}

// leaf -> intermediates (each issued and signed by the next) -> a root of the
// bundle (a trailing copy of the root itself is tolerated). Error string or null.
function chainError(chain, roots) {
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) {
      return `certificate_chain[${i}] is not issued and signed by certificate_chain[${i + 1}]`;
    }
  }
  if (!roots) return null;
  const top = chain[chain.length - 1];
  for (const r of roots) {
    if (r.fingerprint256 === top.fingerprint256) return null;
    if (top.checkIssued(r) && top.verify(r.publicKey)) return null;
  }
  return 'the chain does not lead to a root of the latest ROOTCA bundle';
}

function isRootName(name) {
  return name === 'ROOTCA' || name.startsWith('file-root:');
}

// --- the harness ----------------------------------------------------------------
function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!o.socket) harnessError('--socket is required');
  if (!o.names) harnessError('--names is required');
  const names = o.names.split(',').filter((n) => n);
  if (names.length === 0 || new Set(names).size !== names.length) harnessError('--names: distinct names, comma separated');
  const durationMs = Number(o['duration-ms'] || 30000);
  if (!(durationMs > 0)) harnessError('--duration-ms must be a positive number');
  const scenario = o.scenario || 'watch';
  if (!SCENARIOS.includes(scenario)) harnessError(`--scenario is one of ${SCENARIOS.join(', ')}`);
  const expect = o.expect;
  if (expect !== undefined && (scenario !== 'hold' || !['response', 'none'].includes(expect))) {
    harnessError('--expect response|none goes with --scenario hold');
  }
  const nodeId = o['node-id'] || 'sidecar~127.0.0.1~harness.default~default.svc.cluster.local';
  const cluster = o.cluster || 'harness.default';
  const eventsFile = o.events;

  const { Sds, Secret } = loadSdsProtos();
  const socketPath = path.resolve(o.socket);
  // Short reconnect backoff so a server that starts after the harness is
  // reached promptly (grpc-js would otherwise back off up to 120 s).
  const client = new Sds(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 1000,
  });

  const t0 = Date.now();
  // Violations, each distinct message once with a count (a looping server
  // would otherwise print thousands of lines).
  const violationCounts = new Map();
  const violations = { push: (msg) => violationCounts.set(msg, (violationCounts.get(msg) || 0) + 1) };
  const violationList = () => [...violationCounts].map(([m, n]) => (n > 1 ? `${m} (${n} times)` : m));
  const streams = [];           // SdsStream objects
  let latestRoots = null;       // X509Certificate[] of the last accepted ROOTCA
  let pendingChains = [];       // {stream, serial, chain, deadline}
  const rootcaSubscribed = names.some(isRootName);
  const timers = new Set();
  let finished = false;

  const later = (ms, fn) => {
    const t = setTimeout(() => { timers.delete(t); if (!finished) fn(); }, ms);
    timers.add(t);
    return t;
  };
  const since = () => Date.now() - t0;
  const event = (obj) => {
    if (!eventsFile) return;
    try {
      fs.appendFileSync(eventsFile, JSON.stringify({ unix_ms: Date.now(), t_ms: since(), ...obj }) + '\n');
    } catch (e) {
      harnessError(`cannot write --events file: ${e.message}`);
    }
  };

  function checkPending() {
    const keep = [];
    for (const p of pendingChains) {
      const err = latestRoots ? chainError(p.chain, latestRoots)
          : `no ROOTCA bundle arrived within ${CHAIN_GRACE_MS} ms of the leaf`;
      if (!err) continue;
      if (Date.now() >= p.deadline) {
        violations.push(`${p.stream.key}: leaf ${p.serial}: ${err}`);
      } else {
        keep.push(p);
      }
    }
    pendingChains = keep;
  }

  class SdsStream {
    constructor(key, streamNames) {
      this.key = key;
      this.names = streamNames;
      this.stats = {
        responses: 0, acks: 0, nacks: 0, serials: [], first_response_ms: null,
        reconnects: 0, end_code: null, end_details: null,
      };
      this.call = null;
      this.first = true;            // the next request is the first of its stream
      this.acceptedVersion = '';
      this.ackedContent = new Map();  // name -> the Secret last ACKed on this call
      this.nackedContent = null;      // the response last NACKed on this call
      this.held = null;             // {serial, notAfter} of the leaf Envoy would be using
      this.sc = { state: 'start', passed: null, detail: '' };  // per-stream scenario state
    }

    send(req) {
      const msg = { type_url: TYPE_URL, resource_names: this.names, ...req };
      if (this.first) {
        msg.node = { id: nodeId, cluster };
        this.first = false;
      }
      this.call.write(msg);
    }

    // A new stream: empty nonce, the last accepted version (empty at first).
    open() {
      const call = client.StreamSecrets();
      this.call = call;
      this.first = true;
      this.ackedContent = new Map();
      this.nackedContent = null;
      call.on('data', (resp) => { if (this.call === call && !finished) this.onResponse(resp); });
      call.on('error', () => {});  // the status event carries it
      call.on('status', (st) => { if (this.call === call && !finished) this.onStatus(st); });
      this.send({ version_info: this.acceptedVersion, response_nonce: '' });
    }

    // Cancel this stream ourselves (its CANCELLED status is ignored).
    drop() {
      const call = this.call;
      this.call = null;
      if (call) call.cancel();
    }

    onStatus(st) {
      this.stats.end_code = st.code;
      this.stats.end_details = st.details;
      this.call = null;
      if (st.code === grpc.status.UNAVAILABLE) {
        later(RECONNECT_DELAY_MS, () => {
          this.stats.reconnects++;
          this.open();
        });
      } else {
        scenarioEnded(this);
      }
    }

    ack(resp) {
      this.send({ version_info: resp.version_info, response_nonce: resp.nonce });
      this.stats.acks++;
    }

    nack(resp, message) {
      this.send({
        version_info: this.acceptedVersion, response_nonce: resp.nonce,
        error_detail: { code: 3, message: message.slice(0, 1000), details: [] },
      });
      this.stats.nacks++;
    }

    onResponse(resp) {
      const now = Date.now();
      this.stats.responses++;
      if (this.stats.first_response_ms === null) this.stats.first_response_ms = now - t0;
      const v = this.examine(resp, now);
      for (const p of v.problems) violations.push(`${this.key}: ${p}`);
      const action = scenarioAction(this, resp, v, now);
      for (const s of v.secrets) {
        event({ stream: this.key, name: s.name, version: resp.version_info, nonce: resp.nonce,
                action, serial: s.cert ? s.cert.serial : null,
                not_after: s.cert ? new Date(s.cert.notAfter).toISOString() : null });
      }
      if (v.secrets.length === 0) {
        event({ stream: this.key, name: null, version: resp.version_info, nonce: resp.nonce, action });
      }
      if (action === 'ack') {
        this.ack(resp);
        this.accept(resp, v, now);
      } else if (action === 'nack') {
        this.nack(resp, v.nack.length ? v.nack.join('; ') : 'harness: deliberate NACK (scenario nack)');
        this.nackedContent = v.content;
      }
    }

    // Envoy's checks plus the server obligations. Returns
    // {nack: [reasons Envoy would NACK for], problems: [violations], secrets, content}.
    examine(resp, now) {
      const nack = [];
      const problems = [];
      const secrets = [];
      if (resp.type_url !== TYPE_URL) nack.push(`response type_url "${resp.type_url}"`);
      if (!resp.nonce) problems.push('response with an empty nonce (it cannot be ACKed)');
      // One name per stream: exactly one Secret. Several names: the first
      // response is checked for all of them (scenario multi); a later one may
      // carry only what changed, but never more, never none.
      const n = resp.resources.length;
      if (n === 0 || n > this.names.length || (this.names.length === 1 && n !== 1)) {
        nack.push(`${n} resources in a response to a stream that asked for ` +
                  `${this.names.length} (${this.names.join(',')})`);
      }
      const seen = new Set();
      for (const any of resp.resources) {
        if (any.type_url !== TYPE_URL) {
          nack.push(`resource of type "${any.type_url}"`);
          continue;
        }
        let sec;
        try {
          sec = Secret.decode(any.value);
        } catch (e) {
          nack.push(`resource does not decode as a Secret: ${e.message}`);
          continue;
        }
        const entry = { name: sec.name, content: JSON.stringify(Secret.toObject(sec, { bytes: String })) };
        secrets.push(entry);
        if (!this.names.includes(sec.name)) {
          nack.push(`Secret named "${sec.name}" on a stream for ${this.names.join(',')}`);
          continue;
        }
        if (seen.has(sec.name)) {
          nack.push(`Secret "${sec.name}" twice in one response`);
          continue;
        }
        seen.add(sec.name);
        if (isRootName(sec.name)) {
          if (sec.type !== 'validation_context') {
            nack.push(`Secret "${sec.name}" is ${sec.type || 'empty'}, not validation_context`);
            continue;
          }
          const r = checkValidationContext(sec.validation_context);
          if (r.nack) { nack.push(`${sec.name}: ${r.nack}`); continue; }
          if (r.notCa.length) problems.push(`${sec.name}: trusted_ca holds non-CA certificates ${r.notCa.join(',')}`);
          entry.roots = r.roots;
        } else {
          if (sec.type !== 'tls_certificate') {
            nack.push(`Secret "${sec.name}" is ${sec.type || 'empty'}, not tls_certificate`);
            continue;
          }
          const r = checkTlsCertificate(sec.tls_certificate);
          if (r.nack) { nack.push(`${sec.name}: ${r.nack}`); continue; }
          entry.cert = r;
          if (now < r.notBefore || now > r.notAfter) {
            problems.push(`${sec.name}: leaf ${r.serial} received outside its validity ` +
                          `(${r.leaf.validFrom} .. ${r.leaf.validTo})`);
          }
        }
      }
      const content = JSON.stringify(secrets.map((s) => [s.name, s.content]).sort());
      if (secrets.length > 0 && secrets.every((s) => this.ackedContent.get(s.name) === s.content)) {
        problems.push(`resend of the content last ACKed on this stream (version "${resp.version_info}")`);
      }
      if (this.nackedContent !== null && content === this.nackedContent) {
        problems.push(`resend of the content NACKed on this stream (version "${resp.version_info}")`);
      }
      for (const n of nack) problems.push(`NACK: ${n}`);
      return { nack, problems, secrets, content };
    }

    // What Envoy holds after an ACK: the new leaf (gap check) and the new bundle.
    accept(resp, v, now) {
      this.acceptedVersion = resp.version_info;
      for (const s of v.secrets) this.ackedContent.set(s.name, s.content);
      this.nackedContent = null;
      for (const s of v.secrets) {
        if (s.roots) {
          latestRoots = s.roots;
          checkPending();
        }
      }
      for (const s of v.secrets) {
        if (!s.cert) continue;
        const c = s.cert;
        if (!this.stats.serials.includes(c.serial)) this.stats.serials.push(c.serial);
        if (this.held && this.held.serial !== c.serial && this.held.notAfter < now) {
          violations.push(`${this.key}: leaf ${this.held.serial} expired at ` +
                          `${new Date(this.held.notAfter).toISOString()}, the next one (${c.serial}) ` +
                          `arrived ${now - this.held.notAfter} ms later`);
        }
        this.held = { serial: c.serial, notAfter: c.notAfter };
        const linkErr = chainError(c.chain, null);
        if (linkErr) {
          violations.push(`${this.key}: leaf ${c.serial}: ${linkErr}`);
        } else if (rootcaSubscribed && (!latestRoots || chainError(c.chain, latestRoots))) {
          // The bundle with its root may still be on its way on the ROOTCA stream.
          pendingChains.push({ stream: this, serial: c.serial, chain: c.chain, deadline: now + CHAIN_GRACE_MS });
          later(CHAIN_GRACE_MS + 10, () => checkPending());
        }
      }
    }
  }

  // --- scenarios ----------------------------------------------------------------
  // Each stream carries {state, passed, detail}; scenarioAction decides the
  // reply to a response, and the windows settle the outcome.
  function decide(st, passed, detail) {
    if (st.sc.passed !== null) return;
    st.sc.passed = passed;
    st.sc.detail = detail;
    st.sc.state = 'decided';
    maybeFinishEarly();
  }

  function scenarioAction(st, resp, v, now) {
    const normal = v.nack.length ? 'nack' : 'ack';
    const sc = st.sc;
    switch (scenario) {
      case 'stale-nonce':
        if (sc.state === 'start') {
          if (normal === 'nack') { decide(st, false, 'the first response was NACKed'); return normal; }
          sc.state = 'window';
          // After the ACK goes out: a request with a nonce the server never sent.
          setImmediate(() => {
            if (finished || st.call === null) return;
            st.send({ version_info: resp.version_info, response_nonce: `harness-stale-${crypto.randomBytes(6).toString('hex')}` });
            sc.windowStart = Date.now();
            later(STALE_WINDOW_MS, () => decide(st, true, `no response within ${STALE_WINDOW_MS} ms of a stale nonce`));
          });
        } else if (sc.state === 'window') {
          decide(st, false, `a response arrived ${sc.windowStart ? now - sc.windowStart : 0} ms after a request with a stale nonce`);
        }
        return normal;
      case 'ack-no-reply':
        if (sc.state === 'start') {
          if (normal === 'nack') { decide(st, false, 'the first response was NACKed'); return normal; }
          sc.state = 'window';
          sc.windowStart = now;
          later(ACK_WINDOW_MS, () => decide(st, true, `no response within ${ACK_WINDOW_MS} ms of the ACK`));
        } else if (sc.state === 'window') {
          decide(st, false, `a response arrived ${now - sc.windowStart} ms after the ACK`);
        }
        return normal;
      case 'nack':
        if (sc.state === 'start') {
          sc.state = 'window';
          sc.windowStart = now;
          sc.nacked = v.content;
          later(NACK_WINDOW_MS, () => decide(st, true, `the NACKed content did not come back within ${NACK_WINDOW_MS} ms`));
          return 'nack';
        }
        if (sc.state === 'window' && v.content === sc.nacked) {
          decide(st, false, `the NACKed content was resent ${now - sc.windowStart} ms after the NACK`);
        }
        return normal;
      case 'multi':
        if (sc.state === 'start') {
          const got = v.secrets.map((s) => s.name).sort();
          const want = [...st.names].sort();
          const shapeOk = got.length === want.length && got.every((n, i) => n === want[i]);
          decide(st, shapeOk, shapeOk
              ? `the first response carried ${want.join(',')}, one each`
              : `the first response carried [${got.join(',')}], expected [${want.join(',')}]`);
        }
        return normal;
      case 'reconnect':
        if (sc.state === 'start') {
          if (normal === 'nack') { decide(st, false, 'the first response was NACKed'); return normal; }
          sc.state = 'reconnecting';
          setImmediate(() => {
            if (finished) return;
            st.drop();
            st.open();  // version_info = the version just ACKed, empty nonce
            sc.state = 'window';
            sc.windowStart = Date.now();
            later(RECONNECT_WINDOW_MS, () => decide(st, false, `no response within ${RECONNECT_WINDOW_MS} ms of reconnecting with version "${st.acceptedVersion}"`));
          });
        } else if (sc.state === 'window') {
          decide(st, true, `a response arrived ${now - sc.windowStart} ms after reconnecting`);
        }
        return normal;
      default:  // watch, hold
        return normal;
    }
  }

  function scenarioEnded(st) {
    if (['watch', 'hold'].includes(scenario) || st.sc.passed !== null) return;
    decide(st, false, `the stream ended with code ${st.stats.end_code} (${st.stats.end_details}) before the scenario was decided`);
  }

  function maybeFinishEarly() {
    if (['watch', 'hold'].includes(scenario)) return;
    if (streams.every((s) => s.sc.passed !== null)) setImmediate(finish);
  }

  function finish() {
    if (finished) return;
    finished = true;
    const end = Date.now();
    for (const t of timers) clearTimeout(t);
    for (const s of streams) s.drop();
    client.close();
    // A leaf still within its grace period at the end stays unjudged.
    checkPending();
    for (const s of streams) {
      if (s.held && s.held.notAfter < end) {
        violations.push(`${s.key}: the leaf held at the end (${s.held.serial}) expired at ` +
                        `${new Date(s.held.notAfter).toISOString()}, ${end - s.held.notAfter} ms before the end`);
      }
    }
    if (scenario === 'watch') {
      // A watch that never got an answer proves nothing: say so.
      for (const s of streams) {
        if (s.stats.responses === 0) {
          violations.push(`${s.key}: no response in ${end - t0} ms (last status: ${s.stats.end_code}` +
                          `${s.stats.end_details ? ` ${s.stats.end_details}` : ''}; use --scenario hold ` +
                          `for a secret that may not exist yet)`);
        }
      }
    }
    let passed = true;
    let detail = '';
    if (scenario === 'hold') {
      if (expect === 'response') {
        const missing = streams.filter((s) => s.stats.responses === 0).map((s) => s.key);
        passed = missing.length === 0;
        detail = passed ? 'every stream had a response' : `no response on ${missing.join(',')}`;
      } else if (expect === 'none') {
        const got = streams.filter((s) => s.stats.responses > 0).map((s) => s.key);
        passed = got.length === 0;
        detail = passed ? 'no stream had a response' : `responses on ${got.join(',')}`;
      }
    } else if (scenario !== 'watch') {
      const details = [];
      for (const s of streams) {
        if (s.sc.passed === null) {
          s.sc.passed = false;
          s.sc.detail = s.stats.responses === 0 ? 'no first response within the duration' : 'undecided at the end of the duration';
        }
        if (!s.sc.passed) passed = false;
        details.push(`${s.key}: ${s.sc.detail}`);
      }
      detail = details.join('; ');
    }
    const list = violationList();
    const out = {
      ok: list.length === 0 && passed,
      scenario,
      scenario_passed: passed,
      scenario_detail: detail,
      duration_ms: end - t0,
      streams: Object.fromEntries(streams.map((s) => [s.key, s.stats])),
      violations: list,
    };
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(out.ok ? 0 : 3));
  }

  if (scenario === 'multi') {
    streams.push(new SdsStream(names.join(','), names));
  } else {
    for (const n of names) streams.push(new SdsStream(n, [n]));
  }
  for (const s of streams) s.open();
  setTimeout(finish, durationMs);
}

try {
  main();
} catch (e) {
  harnessError(e.stack || String(e));
}
