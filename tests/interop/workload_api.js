#!/usr/bin/env node
// Calls the SPIFFE Workload API the way go-spiffe's workloadapi client does
// (PROTOCOLS.md §3, §4), written from the wire facts and not from meshid's C++
// code:
//   - gRPC over a Unix socket (target `unix:/path`, what
//     SPIFFE_ENDPOINT_SOCKET=unix:///path names), metadata
//     `workload.spiffe.io: true` on every call;
//   - FetchX509SVID and FetchX509Bundles held open as server streams (go-spiffe's
//     X509Source watches both); a stream that fails with UNAVAILABLE is called
//     again after 200 ms (go-spiffe retries with a longer backoff), any other
//     code ends it and is reported;
//   - the checks go-spiffe's x509svid.ParseRaw and the workloadapi parser make
//     on each X509SVIDResponse: at least one svid; x509_svid is DER
//     certificates concatenated (split on the ASN.1 SEQUENCE headers), the leaf
//     first; the leaf has exactly one URI SAN, equal to spiffe_id, is not a CA,
//     has digitalSignature and neither keyCertSign nor cRLSign; every later
//     certificate is CA:TRUE with keyCertSign; x509_svid_key is unencrypted
//     PKCS#8 DER and matches the leaf's public key; bundle is DER CA
//     certificates and the chain verifies to one of them;
//   - X509BundlesResponse.bundles holds `spiffe://<td>` with at least one DER
//     CA certificate (td from --trust-domain, else from --expect-id, else from
//     the first svid).
// On top it asserts what a server owes its callers: the first response at once
// (< 1000 ms after each call, unless the call ends in an error), never a silent
// stream; the leaf valid at receipt; svids[0].spiffe_id == --expect-id; no gap
// in which an identity's held leaf had expired before the next one arrived, and
// every held leaf still valid at the end.
//
//   node workload_api.js --socket PATH --duration-ms N [--expect-id SPIFFE_ID]
//       [--trust-domain TD] [--scenario NAME] [--expect-code N|NAME]
//
// Scenarios:
//   watch         (default) both streams for --duration-ms, with the checks above;
//                 a stream that never had a response is a violation.
//   no-header     FetchX509SVID and FetchX509Bundles WITHOUT the header: both
//                 must end with INVALID_ARGUMENT and no response.
//   expect-error  FetchX509SVID (with the header, no retry); passes when the
//                 call ends with --expect-code (e.g. 7 / PERMISSION_DENIED for a
//                 caller with no entry, 14 / UNAVAILABLE before the SVID is issued).
//   jwt           FetchJWTSVID {audience: ["x"]}; passes when it ends with
//                 UNIMPLEMENTED (or --expect-code if given; 0 = a successful answer).
// watch runs for --duration-ms; the others stop once decided (--duration-ms caps them).
//
// Prints one JSON line:
//   {"ok":bool, "scenario":NAME, "scenario_passed":bool, "scenario_detail":"...",
//    "duration_ms":N, "svid_responses":N, "bundle_responses":N,
//    "serials":[lowercase hex, every distinct leaf in order of arrival],
//    "ids":[spiffe_id of the last response's svids],
//    "first_response_ms":N|null, "first_bundle_response_ms":N|null,
//    "reconnects":N, "end_code":N|null, "end_details":S|null,
//    "bundle_end_code":N|null, "bundle_end_details":S|null, "violations":["..."]}
// first_*_ms are measured from the harness start; end_code/end_details are the
// last status the FetchX509SVID call (FetchJWTSVID for jwt) ended with before
// the harness stopped (null if it was still open).
// ok = no violations and the scenario passed. Exit 0 when ok, 3 when not ok,
// 1 on a harness error.
'use strict';

const crypto = require('crypto');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const PROTO_DIR = path.join(__dirname, 'proto');
const RECONNECT_DELAY_MS = 200;
const FIRST_RESPONSE_MS = 1000;
const SCENARIOS = ['watch', 'no-header', 'expect-error', 'jwt'];

function harnessError(msg) {
  process.stderr.write(`workload_api: ${msg}\n`);
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

function statusCode(s) {
  if (/^\d+$/.test(s)) return Number(s);
  const c = grpc.status[String(s).toUpperCase()];
  if (c === undefined) harnessError(`unknown status code ${s}`);
  return c;
}

// --- DER ----------------------------------------------------------------------
// One TLV at off: {tag, start, body, end}. Throws on truncation.
function tlvAt(buf, off) {
  if (off + 2 > buf.length) throw new Error(`truncated DER header at ${off}`);
  const tag = buf[off];
  let len = buf[off + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || off + 2 + n > buf.length) throw new Error(`bad DER length at ${off}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
    hdr += n;
  }
  const end = off + hdr + len;
  if (end > buf.length) throw new Error(`DER element at ${off} runs past the end (${end} > ${buf.length})`);
  return { tag, start: off, body: off + hdr, end };
}

function children(buf, t) {
  const out = [];
  for (let off = t.body; off < t.end;) {
    const c = tlvAt(buf, off);
    out.push(c);
    off = c.end;
  }
  return out;
}

// Concatenated DER SEQUENCEs -> [Buffer].
function splitDer(buf) {
  const out = [];
  for (let off = 0; off < buf.length;) {
    const t = tlvAt(buf, off);
    if (t.tag !== 0x30) throw new Error(`element at ${off} is tag 0x${t.tag.toString(16)}, not a SEQUENCE`);
    out.push(buf.subarray(t.start, t.end));
    off = t.end;
  }
  return out;
}

function parseCerts(buf, what) {
  const ders = splitDer(Buffer.from(buf));
  if (ders.length === 0) throw new Error(`${what} is empty`);
  return ders.map((d, i) => {
    try {
      return { der: d, x: new crypto.X509Certificate(d) };
    } catch (e) {
      throw new Error(`${what}[${i}] is not a certificate: ${e.message}`);
    }
  });
}

// {oidHex: Buffer of the extnValue OCTET STRING body} of a certificate.
function extensions(der) {
  const cert = tlvAt(der, 0);
  const tbs = children(der, cert)[0];
  const out = {};
  for (const f of children(der, tbs)) {
    if (f.tag !== 0xa3) continue;
    const seq = children(der, f)[0];
    for (const ext of children(der, seq)) {
      const parts = children(der, ext);
      const oid = der.subarray(parts[0].body, parts[0].end).toString('hex');
      const val = parts[parts.length - 1];
      out[oid] = der.subarray(val.body, val.end);
    }
  }
  return out;
}

const OID_KEY_USAGE = '551d0f';       // 2.5.29.15
const OID_SAN = '551d11';             // 2.5.29.17

// keyUsage bits, or null when the extension is absent.
function keyUsage(der) {
  const v = extensions(der)[OID_KEY_USAGE];
  if (!v) return null;
  const bits = tlvAt(v, 0);
  const b0 = bits.end > bits.body + 1 ? v[bits.body + 1] : 0;
  return { digitalSignature: !!(b0 & 0x80), keyCertSign: !!(b0 & 0x04), cRLSign: !!(b0 & 0x02) };
}

// The URI SANs (GeneralName [6] IA5String) of a certificate.
function uriSans(der) {
  const v = extensions(der)[OID_SAN];
  if (!v) return [];
  const names = tlvAt(v, 0);
  return children(v, names).filter((g) => g.tag === 0x86).map((g) => v.subarray(g.body, g.end).toString('latin1'));
}

function timeMs(s) {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`cannot parse certificate time "${s}"`);
  return t;
}

function spkiDer(key) {
  return key.export({ type: 'spki', format: 'der' });
}

// Is cert issued and signed by one of cas (or one of them)?
function anchoredIn(cert, cas) {
  return cas.some((r) => r.fingerprint256 === cert.fingerprint256 ||
                         (cert.checkIssued(r) && cert.verify(r.publicKey)));
}

// go-spiffe's checks on one X509SVID. Returns {error} or {id, serial, notBefore, notAfter}.
function checkSvid(svid) {
  let chain;
  let bundle;
  try {
    chain = parseCerts(svid.x509_svid, 'x509_svid');
  } catch (e) {
    return { error: e.message };
  }
  const leaf = chain[0].x;
  let uris;
  let leafKu;
  try {
    uris = uriSans(chain[0].der);
    leafKu = keyUsage(chain[0].der);
  } catch (e) {
    return { error: `leaf extensions do not parse: ${e.message}` };
  }
  if (uris.length !== 1) return { error: `leaf has ${uris.length} URI SANs, expected exactly one` };
  if (uris[0] !== svid.spiffe_id) return { error: `leaf URI SAN ${uris[0]} != spiffe_id ${svid.spiffe_id}` };
  if (leaf.ca) return { error: 'leaf is a CA certificate' };
  if (!leafKu) return { error: 'leaf has no keyUsage extension' };
  if (!leafKu.digitalSignature) return { error: 'leaf keyUsage lacks digitalSignature' };
  if (leafKu.keyCertSign || leafKu.cRLSign) return { error: 'leaf keyUsage has keyCertSign or cRLSign' };
  for (let i = 1; i < chain.length; i++) {
    // (node's .ca is OpenSSL's X509_check_ca: CA:TRUE and, if keyUsage is
    // present, keyCertSign; so keyUsage is looked at first for a clear message)
    let ku;
    try {
      ku = keyUsage(chain[i].der);
    } catch (e) {
      return { error: `x509_svid[${i}] extensions do not parse: ${e.message}` };
    }
    if (!ku || !ku.keyCertSign) return { error: `x509_svid[${i}] keyUsage lacks keyCertSign` };
    if (!chain[i].x.ca) return { error: `x509_svid[${i}] is not CA:TRUE` };
  }
  let key;
  try {
    key = crypto.createPrivateKey({ key: Buffer.from(svid.x509_svid_key), format: 'der', type: 'pkcs8' });
  } catch (e) {
    return { error: `x509_svid_key is not an unencrypted PKCS#8 DER key: ${e.message}` };
  }
  if (!spkiDer(crypto.createPublicKey(key)).equals(spkiDer(leaf.publicKey))) {
    return { error: 'x509_svid_key does not match the leaf public key' };
  }
  try {
    bundle = parseCerts(svid.bundle, 'bundle').map((c) => c.x);
  } catch (e) {
    return { error: e.message };
  }
  const notCa = bundle.findIndex((c) => !c.ca);
  if (notCa >= 0) return { error: `bundle[${notCa}] is not a CA certificate` };
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i].x.checkIssued(chain[i + 1].x) || !chain[i].x.verify(chain[i + 1].x.publicKey)) {
      return { error: `x509_svid[${i}] is not issued and signed by x509_svid[${i + 1}]` };
    }
  }
  if (!anchoredIn(chain[chain.length - 1].x, bundle)) {
    return { error: 'the x509_svid chain does not verify to a certificate of bundle' };
  }
  return {
    id: svid.spiffe_id,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: timeMs(leaf.validFrom),
    notAfter: timeMs(leaf.validTo),
    validFrom: leaf.validFrom,
    validTo: leaf.validTo,
  };
}

function trustDomainOf(id) {
  const m = /^spiffe:\/\/([^/]+)/.exec(id || '');
  return m ? m[1] : null;
}

// --- the harness ----------------------------------------------------------------
function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!o.socket) harnessError('--socket is required');
  const durationMs = Number(o['duration-ms'] || 10000);
  if (!(durationMs > 0)) harnessError('--duration-ms must be a positive number');
  const scenario = o.scenario || 'watch';
  if (!SCENARIOS.includes(scenario)) harnessError(`--scenario is one of ${SCENARIOS.join(', ')}`);
  if (scenario === 'expect-error' && o['expect-code'] === undefined) harnessError('expect-error needs --expect-code');
  const expectCode = o['expect-code'] !== undefined ? statusCode(o['expect-code'])
      : (scenario === 'jwt' ? grpc.status.UNIMPLEMENTED : null);
  const expectId = o['expect-id'];
  let trustDomain = o['trust-domain'] || trustDomainOf(expectId);

  const def = loader.loadSync(['spiffe/workload.proto'], {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  const pkg = grpc.loadPackageDefinition(def);
  const client = new pkg.SpiffeWorkloadAPI(`unix:${path.resolve(o.socket)}`, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 1000,
  });

  const t0 = Date.now();
  // Violations, each distinct message once with a count.
  const violationCounts = new Map();
  const violations = { push: (msg) => violationCounts.set(msg, (violationCounts.get(msg) || 0) + 1) };
  const out = {
    svid_responses: 0, bundle_responses: 0, serials: [], ids: [],
    first_response_ms: null, first_bundle_response_ms: null, reconnects: 0,
    end_code: null, end_details: null, bundle_end_code: null, bundle_end_details: null,
  };
  const held = new Map();            // spiffe_id -> {serial, notAfter}
  const bundleKeySets = [];          // keys of each X509BundlesResponse, checked at the end
  const calls = new Set();           // open calls {call, kind, openedAt, answered}
  const timers = new Set();
  let finished = false;
  let scenarioPassed = null;
  let scenarioDetail = '';

  const later = (ms, fn) => {
    const t = setTimeout(() => { timers.delete(t); if (!finished) fn(); }, ms);
    timers.add(t);
  };
  const metadata = (withHeader) => {
    const md = new grpc.Metadata();
    if (withHeader) md.set('workload.spiffe.io', 'true');
    return md;
  };

  function onSvidResponse(rec, resp) {
    const now = Date.now();
    out.svid_responses++;
    if (out.first_response_ms === null) out.first_response_ms = now - t0;
    firstOfCall(rec, now, 'FetchX509SVID');
    const tag = `X509SVIDResponse #${out.svid_responses}`;
    if (resp.svids.length === 0) {
      violations.push(`${tag}: zero svids`);
      return;
    }
    if (expectId && resp.svids[0].spiffe_id !== expectId) {
      violations.push(`${tag}: svids[0].spiffe_id ${resp.svids[0].spiffe_id} != --expect-id ${expectId}`);
    }
    if (!trustDomain) trustDomain = trustDomainOf(resp.svids[0].spiffe_id);
    for (const [td, b] of Object.entries(resp.federated_bundles || {})) {
      try {
        parseCerts(b, `federated_bundles[${td}]`);
      } catch (e) {
        violations.push(`${tag}: ${e.message}`);
      }
    }
    const present = new Set();
    resp.svids.forEach((svid, i) => {
      const r = checkSvid(svid);
      if (r.error) {
        violations.push(`${tag}: svids[${i}] (${svid.spiffe_id}): ${r.error}`);
        return;
      }
      if (present.has(r.id)) violations.push(`${tag}: spiffe_id ${r.id} twice`);
      present.add(r.id);
      if (now < r.notBefore || now > r.notAfter) {
        violations.push(`${tag}: leaf ${r.serial} received outside its validity (${r.validFrom} .. ${r.validTo})`);
      }
      if (!out.serials.includes(r.serial)) out.serials.push(r.serial);
      const h = held.get(r.id);
      if (h && h.serial !== r.serial && h.notAfter < now) {
        violations.push(`${r.id}: leaf ${h.serial} expired at ${new Date(h.notAfter).toISOString()}, ` +
                        `the next one (${r.serial}) arrived ${now - h.notAfter} ms later`);
      }
      held.set(r.id, { serial: r.serial, notAfter: r.notAfter });
    });
    // Every message is the full state: an identity left out is gone.
    for (const id of [...held.keys()]) if (!present.has(id)) held.delete(id);
    out.ids = resp.svids.map((s) => s.spiffe_id);
  }

  function onBundleResponse(rec, resp) {
    const now = Date.now();
    out.bundle_responses++;
    if (out.first_bundle_response_ms === null) out.first_bundle_response_ms = now - t0;
    firstOfCall(rec, now, 'FetchX509Bundles');
    const tag = `X509BundlesResponse #${out.bundle_responses}`;
    const keys = Object.keys(resp.bundles || {});
    bundleKeySets.push({ tag, keys });
    if (keys.length === 0) violations.push(`${tag}: no bundles`);
    for (const k of keys) {
      if (!/^spiffe:\/\/[^/]+$/.test(k)) violations.push(`${tag}: key "${k}" is not spiffe://<trust-domain>`);
      try {
        const certs = parseCerts(resp.bundles[k], `bundles[${k}]`);
        const notCa = certs.findIndex((c) => !c.x.ca);
        if (notCa >= 0) violations.push(`${tag}: bundles[${k}][${notCa}] is not a CA certificate`);
      } catch (e) {
        violations.push(`${tag}: ${e.message}`);
      }
    }
  }

  function firstOfCall(rec, now, what) {
    if (rec.answered) return;
    rec.answered = true;
    if (now - rec.openedAt > FIRST_RESPONSE_MS) {
      violations.push(`${what}: first response ${now - rec.openedAt} ms after the call (expected at once)`);
    }
  }

  // A server stream; UNAVAILABLE is retried (watch only).
  function openStream(kind, withHeader, retry) {
    const method = kind === 'svid' ? 'FetchX509SVID' : 'FetchX509Bundles';
    const call = client[method]({}, metadata(withHeader));
    const rec = { call, kind, openedAt: Date.now(), answered: false };
    calls.add(rec);
    call.on('data', (resp) => {
      if (finished) return;
      if (kind === 'svid') onSvidResponse(rec, resp); else onBundleResponse(rec, resp);
    });
    call.on('error', () => {});  // the status event carries it
    call.on('status', (st) => {
      calls.delete(rec);
      if (finished) return;
      if (kind === 'svid') {
        out.end_code = st.code;
        out.end_details = st.details;
      } else {
        out.bundle_end_code = st.code;
        out.bundle_end_details = st.details;
      }
      if (retry && st.code === grpc.status.UNAVAILABLE) {
        later(RECONNECT_DELAY_MS, () => {
          out.reconnects++;
          openStream(kind, withHeader, retry);
        });
      }
      onEnded();
    });
  }

  function decide(passed, detail) {
    if (scenarioPassed !== null) return;
    scenarioPassed = passed;
    scenarioDetail = detail;
    setImmediate(finish);
  }

  function onEnded() {
    if (scenario === 'no-header') {
      if (out.end_code === null || out.bundle_end_code === null) return;
      const ia = grpc.status.INVALID_ARGUMENT;
      const passed = out.end_code === ia && out.bundle_end_code === ia &&
                     out.svid_responses === 0 && out.bundle_responses === 0;
      decide(passed, `without the header FetchX509SVID ended with ${out.end_code}, FetchX509Bundles with ` +
                     `${out.bundle_end_code} after ${out.svid_responses + out.bundle_responses} responses ` +
                     `(expected ${ia}, none)`);
    } else if (scenario === 'expect-error') {
      decide(out.end_code === expectCode,
             `FetchX509SVID ended with ${out.end_code} (${out.end_details}) after ${out.svid_responses} ` +
             `responses, expected ${expectCode}`);
    }
  }

  function finish() {
    if (finished) return;
    finished = true;
    const end = Date.now();
    for (const t of timers) clearTimeout(t);
    for (const rec of calls) {
      if (!rec.answered && end - rec.openedAt > FIRST_RESPONSE_MS && scenario === 'watch') {
        violations.push(`${rec.kind === 'svid' ? 'FetchX509SVID' : 'FetchX509Bundles'}: ` +
                        `held silent for ${end - rec.openedAt} ms (no response, no error)`);
      }
      rec.call.cancel();
    }
    client.close();
    for (const [id, h] of held) {
      if (h.notAfter < end) {
        violations.push(`${id}: the leaf held at the end (${h.serial}) expired at ` +
                        `${new Date(h.notAfter).toISOString()}, ${end - h.notAfter} ms before the end`);
      }
    }
    if (trustDomain) {
      const want = `spiffe://${trustDomain}`;
      for (const b of bundleKeySets) {
        if (!b.keys.includes(want)) violations.push(`${b.tag}: no bundle keyed ${want} (keys: ${b.keys.join(',')})`);
      }
    } else if (bundleKeySets.length) {
      violations.push('the trust domain is unknown (no --trust-domain, --expect-id or svid): bundle keys unchecked');
    }
    if (scenario === 'watch') {
      // A watch that never got an answer proves nothing: say so.
      if (out.svid_responses === 0) {
        violations.push(`no X509SVIDResponse in ${end - t0} ms (FetchX509SVID last ended with ` +
                        `${out.end_code}: ${out.end_details})`);
      }
      if (out.bundle_responses === 0) {
        violations.push(`no X509BundlesResponse in ${end - t0} ms (FetchX509Bundles last ended with ` +
                        `${out.bundle_end_code}: ${out.bundle_end_details})`);
      }
      scenarioPassed = true;
    } else if (scenarioPassed === null) {
      scenarioPassed = false;
      scenarioDetail = `the call had not ended after ${end - t0} ms (${out.svid_responses} X509SVIDResponses, ` +
                       `${out.bundle_responses} X509BundlesResponses)`;
    }
    const list = [...violationCounts].map(([m, n]) => (n > 1 ? `${m} (${n} times)` : m));
    const result = {
      ok: list.length === 0 && scenarioPassed,
      scenario,
      scenario_passed: scenarioPassed,
      scenario_detail: scenarioDetail,
      duration_ms: end - t0,
      ...out,
      violations: list,
    };
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 3));
  }

  if (scenario === 'watch') {
    openStream('svid', true, true);
    openStream('bundle', true, true);
  } else if (scenario === 'no-header') {
    openStream('svid', false, false);
    openStream('bundle', false, false);
  } else if (scenario === 'expect-error') {
    openStream('svid', true, false);
  } else if (scenario === 'jwt') {
    client.FetchJWTSVID({ audience: ['x'] }, metadata(true), { deadline: t0 + durationMs }, (err, resp) => {
      if (finished) return;
      out.end_code = err ? err.code : grpc.status.OK;
      out.end_details = err ? err.details : `${resp.svids.length} JWT-SVIDs`;
      decide(out.end_code === expectCode, `FetchJWTSVID ended with ${out.end_code} (${out.end_details}), expected ${expectCode}`);
    });
  }
  setTimeout(finish, durationMs);
}

try {
  main();
} catch (e) {
  harnessError(e.stack || String(e));
}
