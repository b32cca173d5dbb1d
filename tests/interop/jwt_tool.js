#!/usr/bin/env node
// Makes Kubernetes projected service-account tokens and the JWKS that checks
// them, written from PROTOCOLS.md §1 and RFC 7515/7517/7518 (not from meshid's
// C++ code), so meshid's JWT checks are tested by an independent signer.
//
//   node jwt_tool.js jwks --key K.pem --kid ID [--key K2.pem --kid ID2 ...]
//       prints {"keys":[...]}: each public key as a JWK with kid, use "sig" and
//       alg (RS256 for RSA, ES256 for P-256, ES384 for P-384).
//   node jwt_tool.js sign --key K.pem --kid ID --iss ISS --aud AUD [--aud AUD2]
//       --ns NS --sa SA [--exp-in S] [--nbf-in S] [--iat-in S]
//       [--alg RS256|ES256|none|HS256-with-public-key]
//       prints the compact JWT. Times are seconds from now and may be negative
//       (defaults: exp +3600, iat 0, nbf = iat; an --exp-in <= 0 moves the
//       default iat to one hour before exp, as an old token would have).
//       alg none: empty signature. HS256-with-public-key: HMAC-SHA256 keyed
//       with the public key's PEM text, the classic algorithm-confusion attack.
//
// Exit 0 on success, 1 on a usage or key error (message on stderr).
'use strict';

const crypto = require('crypto');
const fs = require('fs');

function die(msg) {
  process.stderr.write(`jwt_tool: ${msg}\n`);
  process.exit(1);
}

// --name value pairs; repeated names collect into arrays.
function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (i + 1 >= argv.length) die(`${a} needs a value`);
    const value = argv[++i];
    (opts[name] = opts[name] || []).push(value);
  }
  return opts;
}

function one(opts, name, fallback) {
  const v = opts[name];
  if (!v) {
    if (fallback === undefined) die(`--${name} is required`);
    return fallback;
  }
  if (v.length !== 1) die(`--${name} given more than once`);
  return v[0];
}

function intOpt(opts, name, fallback) {
  const s = one(opts, name, null);
  if (s === null) return fallback;
  if (!/^-?\d+$/.test(s)) die(`--${name} must be an integer number of seconds`);
  return parseInt(s, 10);
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function loadPrivateKey(path) {
  try {
    return crypto.createPrivateKey(fs.readFileSync(path));
  } catch (e) {
    die(`cannot read private key ${path}: ${e.message}`);
  }
}

function algFor(key) {
  const t = key.asymmetricKeyType;
  if (t === 'rsa') return 'RS256';
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
  }
  die(`unsupported key type ${t}`);
}

function jwks(opts) {
  const keys = opts.key || [];
  const kids = opts.kid || [];
  if (keys.length === 0) die('--key is required');
  if (keys.length !== kids.length) die('give one --kid per --key');
  const out = { keys: [] };
  keys.forEach((path, i) => {
    const pub = crypto.createPublicKey(loadPrivateKey(path));
    const jwk = pub.export({ format: 'jwk' });
    out.keys.push({ ...jwk, kid: kids[i], use: 'sig', alg: algFor(pub) });
  });
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

function sign(opts) {
  const key = loadPrivateKey(one(opts, 'key'));
  const kid = one(opts, 'kid');
  const iss = one(opts, 'iss');
  const aud = opts.aud;
  if (!aud) die('--aud is required');
  const ns = one(opts, 'ns');
  const sa = one(opts, 'sa');
  const alg = one(opts, 'alg', algFor(key));

  const now = Math.floor(Date.now() / 1000);
  const expIn = intOpt(opts, 'exp-in', 3600);
  const iatIn = intOpt(opts, 'iat-in', expIn > 0 ? 0 : expIn - 3600);
  const nbfIn = intOpt(opts, 'nbf-in', iatIn);

  const header = { alg: alg === 'HS256-with-public-key' ? 'HS256' : alg, kid, typ: 'JWT' };
  const claims = {
    aud,
    exp: now + expIn,
    iat: now + iatIn,
    iss,
    'kubernetes.io': {
      namespace: ns,
      pod: { name: `${sa}-7d9f8b6c5-x2x4q`, uid: crypto.randomUUID() },
      serviceaccount: { name: sa, uid: crypto.randomUUID() },
    },
    nbf: now + nbfIn,
    sub: `system:serviceaccount:${ns}:${sa}`,
  };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;

  let sig;
  switch (alg) {
    case 'RS256':
      if (key.asymmetricKeyType !== 'rsa') die('RS256 needs an RSA key');
      sig = crypto.sign('sha256', Buffer.from(input), key);
      break;
    case 'ES256':
    case 'ES384':
      if (key.asymmetricKeyType !== 'ec') die(`${alg} needs an EC key`);
      // JWS (RFC 7518 §3.4): the raw R || S pair, not DER.
      sig = crypto.sign(alg === 'ES256' ? 'sha256' : 'sha384', Buffer.from(input),
                        { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'none':
      sig = Buffer.alloc(0);
      break;
    case 'HS256-with-public-key': {
      const pem = crypto.createPublicKey(key).export({ type: 'spki', format: 'pem' });
      sig = crypto.createHmac('sha256', pem).update(input).digest();
      break;
    }
    default:
      die(`unknown --alg ${alg}`);
  }
  process.stdout.write(`${input}.${b64url(sig)}\n`);
}

const [cmd, ...rest] = process.argv.slice(2);
const opts = parseArgs(rest);
if (cmd === 'jwks') jwks(opts);
else if (cmd === 'sign') sign(opts);
else die('usage: jwt_tool.js jwks|sign [options] (see the comment at the top)');
