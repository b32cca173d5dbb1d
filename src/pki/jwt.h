// JWS compact (signed JWT) verification against a JWKS, done with OpenSSL 3
// and nlohmann::json. libjwt is not used: its jwt_decode() accepts an HS256
// token whose HMAC key is the RSA public key PEM (TOOLCHAIN.md §3).
//
// What stops algorithm confusion here: HMAC and "none" are refused outright,
// keys come only from the JWKS (never from jku/jwk/x5u/x5c headers), and the
// token's alg must fit the key its kid names (RS*/PS* only with RSA keys,
// ES256 only with P-256, ES384 only with P-384, and the JWK's own "alg" when
// it has one).
//
// This module does JWT mechanics only; mapping claims to an identity (and
// deciding which issuer and audiences to trust) is the caller's policy.
//
// Header weight: only <nlohmann/json_fwd.hpp> is included here. VerifiedJwt
// carries typed copies of the claims a caller normally needs, and the whole
// decoded header and claims behind shared_ptr<const nlohmann::json> for
// anything else (include <nlohmann/json.hpp> to read them).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::pki {

inline constexpr size_t kMaxJwksBytes = 256 * 1024;
inline constexpr size_t kMaxJwksKeys = 100;
inline constexpr size_t kMaxJwtBytes = 16 * 1024;

// The key families a JWS may be verified with; each admits its own algs.
enum class JwkType {
  kRsa,     // RS256 RS384 RS512 PS256 PS384 PS512
  kEcP256,  // ES256
  kEcP384,  // ES384
};
std::string_view jwkTypeName(JwkType type);  // "RSA", "EC P-256", "EC P-384"

// One verification key from a JWKS. Holds the public key only: private
// members of the JWK (d, p, q, dp, dq, qi, oth, k) are never read.
struct Jwk {
  std::string kid;  // empty when the JWK had none
  JwkType type = JwkType::kRsa;
  std::string alg;  // the JWK's "alg" pin ("RS256"), empty when it had none
  EvpPkeyPtr key;   // public key, passed checkKeyStrength
};

// Verification keys by kid. Move-only (owns keys); immutable after parseJwks,
// so one instance may be shared read-only by many threads (publish it as a
// shared_ptr<const Jwks> snapshot when the JWKS is refreshed).
struct Jwks {
  std::map<std::string, Jwk, std::less<>> keys;  // by kid; "" for a JWK without kid
  // One line per JWK that was skipped and not stored, for the log: "key 2
  // (kid \"x\"): use is enc". Also notes private members that were ignored.
  // Never holds key material.
  std::vector<std::string> notes;

  const Jwk* find(std::string_view kid) const;
  size_t size() const { return keys.size(); }
};

// Parses a JWK Set ({"keys": [...]}, RFC 7517) such as Kubernetes serves at
// /openid/v1/jwks. Accepts RSA (n, e) and EC P-256/P-384 (crv, x, y) keys.
// Skips (with a note) keys whose use is not "sig", whose key_ops exclude
// "verify", of another kty (oct, OKP), on another curve, or whose alg is not
// a supported signature alg. Refuses (kInvalidArgument) the whole set for:
// input over kMaxJwksBytes, more than kMaxJwksKeys entries, malformed or
// duplicate-key JSON, a malformed member (bad base64url, missing n/e/x/y,
// wrong coordinate length, point not on the curve), RSA below 2048 or above
// 8192 bits, an alg that contradicts kty, two keys with the same kid
// (including two without kid), and a set that ends with no usable key.
Result<Jwks> parseJwks(std::string_view json);

struct JwtVerifyOptions {
  // Required "iss" value; empty = not checked (a CA should always set it).
  std::string issuer;
  // "aud" (a string or an array) must contain at least one of these; empty =
  // not checked (a CA should always set it, e.g. {"istio-ca"}).
  std::vector<std::string> audiences;
  // The time of the decision; must be set (checked: the epoch default would
  // accept every expired token).
  SystemTime now{};
  // Tolerance for clock differences with the issuer on exp, nbf and iat;
  // must not be negative.
  Seconds skew{60};
};

// The service-account part of a projected Kubernetes token's "kubernetes.io"
// claim: {namespace, serviceaccount: {name, uid}, pod: {name, uid}}.
struct KubernetesClaims {
  std::string namespace_name;        // kubernetes.io.namespace, never empty
  std::string service_account_name;  // kubernetes.io.serviceaccount.name, never empty
  std::string service_account_uid;   // kubernetes.io.serviceaccount.uid, may be empty
  std::string pod_name;              // kubernetes.io.pod.name, empty when not pod-bound
  std::string pod_uid;               // kubernetes.io.pod.uid, empty when not pod-bound
};

// A token whose signature, algorithm and time/issuer/audience claims passed.
struct VerifiedJwt {
  std::string kid;  // the kid of the JWKS key that verified it ("" if none)
  std::string alg;  // "RS256", ...

  std::string issuer;                    // "iss", empty when absent
  std::string subject;                   // "sub", empty when absent
  std::vector<std::string> audiences;    // "aud", a lone string as one element
  SystemTime expires_at;                 // "exp" (always present)
  std::optional<SystemTime> not_before;  // "nbf"
  std::optional<SystemTime> issued_at;   // "iat"
  // Present when the token has a "kubernetes.io" claim (projected
  // service-account tokens); a malformed one fails verification. Legacy
  // secret-based tokens spell these as flat "kubernetes.io/serviceaccount/..."
  // claims: read those from `claims` if you must accept them.
  std::optional<KubernetesClaims> kubernetes;

  // The full decoded JOSE header and claims set, both JSON objects; never null
  // in a VerifiedJwt returned by verifyJwt.
  std::shared_ptr<const nlohmann::json> header;
  std::shared_ptr<const nlohmann::json> claims;
};

// Verifies a JWS compact token ("h.p.s", base64url without padding, no
// whitespace, at most kMaxJwtBytes; the caller strips "Bearer "). Steps, each
// refusing with kUnauthenticated and a message that never quotes the token:
//  - header: a JSON object without duplicate members; alg one of RS256 RS384
//    RS512 PS256 PS384 PS512 ES256 ES384 ("none" and HS* refused by name);
//    no "crit"; jku/jwk/x5u/x5c are ignored, never used as keys;
//  - key: the JWKS key named by kid; without kid only when the JWKS holds
//    exactly one key; the alg must fit that key (see top of file);
//  - signature: RSA PKCS#1 v1.5 / PSS (salt = digest length), or ECDSA as raw
//    R||S of 64 (ES256) or 96 (ES384) bytes (DER is refused);
//  - claims (only after the signature): a JSON object; exp required and
//    now <= exp + skew; now >= nbf - skew; iat <= now + skew; iss equal to
//    options.issuer and aud containing one of options.audiences when those
//    are set; registered claims of the wrong JSON type are refused.
// Fails with kInternal only when OpenSSL cannot allocate. Thread-safe for
// concurrent calls sharing one Jwks.
Result<VerifiedJwt> verifyJwt(std::string_view token, const Jwks& jwks,
                              const JwtVerifyOptions& options);

// For tests and tools: signs claims into a JWS compact token with a private
// key. The alg is header["alg"] when present (it must fit the key: RS*/PS*
// for RSA, ES256 for P-256, ES384 for P-384), else RS256 / ES256 / ES384 by
// key type. ECDSA signatures are emitted raw R||S. header and claims must be
// JSON objects (kInvalidArgument otherwise).
Result<std::string> signJwt(const nlohmann::json& header, const nlohmann::json& claims,
                            const EVP_PKEY* private_key);

// The public JWK (JSON text) of an RSA or EC P-256/P-384 key: kty, kid (if
// not empty), use "sig", alg (RS256/ES256/ES384), n/e or crv/x/y. Private
// members are never written, even when key holds a private key.
Result<std::string> jwkFromPublicKey(const EVP_PKEY* key, std::string_view kid);

// RFC 4648 §5 base64url without padding.
std::string base64UrlEncode(std::string_view data);
// Strict inverse of base64UrlEncode: refuses padding, whitespace, characters
// outside [A-Za-z0-9_-], a length of 4k+1, and non-zero unused trailing bits
// (so each byte string has exactly one accepted encoding). kInvalidArgument.
Result<std::string> base64UrlDecode(std::string_view text);

}  // namespace meshid::pki
