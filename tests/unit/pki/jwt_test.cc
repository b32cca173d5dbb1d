#include "pki/jwt.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "pki/key.h"
#include "unit/common/test_util.h"

namespace meshid::pki {
namespace {

using meshid::testing::errorOf;
using meshid::testing::messageOf;
using meshid::testing::orThrow;
using nlohmann::json;

constexpr int64_t kNow = 1'790'000'000;  // 2026-09-21T...Z; nothing reads the clock
constexpr std::string_view kIssuer = "https://kubernetes.default.svc.cluster.local";

EvpPkeyPtr keygen(const char* type, const char* curve_or_null, size_t bits = 0) {
  EVP_PKEY* k = curve_or_null != nullptr ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, curve_or_null)
                                         : EVP_PKEY_Q_keygen(nullptr, nullptr, type, bits);
  if (k == nullptr) {
    throw std::runtime_error("keygen failed");
  }
  return EvpPkeyPtr(k);
}

// RSA generation is slow on a shared machine: each key once per run.
const EVP_PKEY* rsaKey() {
  static EvpPkeyPtr k = keygen("RSA", nullptr, 2048);
  return k.get();
}
const EVP_PKEY* rsaKey2() {
  static EvpPkeyPtr k = keygen("RSA", nullptr, 2048);
  return k.get();
}
const EVP_PKEY* p256Key() {
  static EvpPkeyPtr k = keygen("EC", "P-256");
  return k.get();
}
const EVP_PKEY* p384Key() {
  static EvpPkeyPtr k = keygen("EC", "P-384");
  return k.get();
}

json jwkJson(const EVP_PKEY* key, std::string_view kid) {
  return json::parse(orThrow(jwkFromPublicKey(key, kid), "jwk"));
}

std::string jwksText(const std::vector<json>& jwks) {
  json set = {{"keys", json::array()}};
  for (const auto& k : jwks) {
    set["keys"].push_back(k);
  }
  return set.dump();
}

Jwks jwksOf(const std::vector<json>& jwks) {
  return orThrow(parseJwks(jwksText(jwks)), "jwks");
}

// The keys a cluster would publish: two RSA keys (one rotating in), EC P-256 and P-384.
const Jwks& clusterJwks() {
  static Jwks jwks = jwksOf({jwkJson(rsaKey(), "rsa-1"), jwkJson(rsaKey2(), "rsa-2"),
                             jwkJson(p256Key(), "ec-256"), jwkJson(p384Key(), "ec-384")});
  return jwks;
}

// A projected service-account token's claims, valid at kNow.
json k8sClaims() {
  return {
      {"iss", kIssuer},
      {"sub", "system:serviceaccount:payments:web"},
      {"aud", json::array({"istio-ca"})},
      {"exp", kNow + 3600},
      {"iat", kNow - 60},
      {"nbf", kNow - 60},
      {"kubernetes.io",
       {{"namespace", "payments"},
        {"serviceaccount", {{"name", "web"}, {"uid", "6d1c-sa"}}},
        {"pod", {{"name", "web-5f7c"}, {"uid", "9a2b-pod"}}}}},
  };
}

JwtVerifyOptions options() {
  JwtVerifyOptions o;
  o.issuer = std::string(kIssuer);
  o.audiences = {"istio-ca"};
  o.now = fromUnixSeconds(kNow);
  o.skew = Seconds{60};
  return o;
}

std::string sign(const EVP_PKEY* key, std::string_view kid, const json& claims = k8sClaims(),
                 json header = json::object()) {
  if (!kid.empty()) {
    header["kid"] = std::string(kid);
  }
  return orThrow(signJwt(header, claims, key), "sign");
}

// A token assembled by hand, for shapes signJwt refuses to make.
std::string craft(const json& header, const json& claims, std::string_view signature) {
  return base64UrlEncode(header.dump()) + "." + base64UrlEncode(claims.dump()) + "." +
         base64UrlEncode(signature);
}

struct Parts {
  std::string header, payload, signature;
};
Parts split(const std::string& token) {
  size_t a = token.find('.');
  size_t b = token.find('.', a + 1);
  return {token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1)};
}

Result<VerifiedJwt> verify(std::string_view token, const JwtVerifyOptions& o = options()) {
  return verifyJwt(token, clusterJwks(), o);
}

// Every refusal is kUnauthenticated and never echoes the token or its parts.
void expectRefused(const Result<VerifiedJwt>& r, std::string_view token, std::string_view needle) {
  ASSERT_FALSE(r.ok()) << "accepted, expected: " << needle;
  EXPECT_EQ(r.error().code, Code::kUnauthenticated) << r.error().message;
  MESHID_EXPECT_CONTAINS(r.error().message, std::string(needle));
  size_t dot = token.find('.');
  std::string_view head = token.substr(0, std::min<size_t>(dot, 24));
  if (head.size() >= 8) {
    MESHID_EXPECT_NOT_CONTAINS(r.error().message, std::string(head));
  }
  size_t last = token.rfind('.');
  if (last != std::string_view::npos && token.size() - last > 16) {
    MESHID_EXPECT_NOT_CONTAINS(r.error().message, std::string(token.substr(last + 1, 16)));
  }
}

std::string hmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof out,
                &len) == nullptr) {
    throw std::runtime_error("hmac failed");
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

// DER ECDSA over data, as plain OpenSSL (and libjwt) produce it.
std::string derEcdsa(const EVP_PKEY* key, std::string_view data) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, const_cast<EVP_PKEY*>(key));
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size());
  sig.resize(len);
  return sig;
}

// ---------------------------------------------------------------- base64url

TEST(JwtBase64Url, RoundTripsEveryLengthAndByte) {
  std::string data;
  for (int i = 0; i < 300; ++i) {
    std::string encoded = base64UrlEncode(data);
    EXPECT_EQ(encoded.find_first_of("+/="), std::string::npos);
    auto decoded = base64UrlDecode(encoded);
    MESHID_ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, data);
    data.push_back(static_cast<char>(i * 37));
  }
  EXPECT_EQ(base64UrlEncode("\xfb\xff"), "-_8");
}

TEST(JwtBase64Url, RefusesPaddingWhitespaceAndForeignCharacters) {
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YQ==")), "padding");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YW Jj")), "whitespace");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YW\nJj")), "whitespace");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("+/8A")), "standard base64");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YW*j")), "outside the base64url alphabet");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YWJjZ")), "impossible");
  EXPECT_EQ(errorOf(base64UrlDecode("YQ==")).code, Code::kInvalidArgument);
}

TEST(JwtBase64Url, RefusesNonCanonicalTrailingBits) {
  // "YR" decodes to "a" with the unused low bits set: two spellings of one byte
  // would let a tampered signature character pass as the original.
  MESHID_EXPECT_OK(base64UrlDecode("YQ"));
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YR")), "unused bits");
  MESHID_EXPECT_CONTAINS(messageOf(base64UrlDecode("YWJ")), "unused bits");
}

// ---------------------------------------------------------------- JWKS

TEST(JwksParse, AcceptsRsaAndEcKeysByKid) {
  const Jwks& jwks = clusterJwks();
  ASSERT_EQ(jwks.size(), 4u);
  ASSERT_NE(jwks.find("rsa-1"), nullptr);
  EXPECT_EQ(jwks.find("rsa-1")->type, JwkType::kRsa);
  EXPECT_EQ(jwks.find("rsa-1")->alg, "RS256");
  EXPECT_EQ(jwks.find("ec-256")->type, JwkType::kEcP256);
  EXPECT_EQ(jwks.find("ec-384")->type, JwkType::kEcP384);
  EXPECT_TRUE(samePublicKey(jwks.find("rsa-1")->key.get(), rsaKey()));
  EXPECT_TRUE(samePublicKey(jwks.find("ec-256")->key.get(), p256Key()));
  EXPECT_TRUE(samePublicKey(jwks.find("ec-384")->key.get(), p384Key()));
  EXPECT_EQ(jwks.find("nope"), nullptr);
  EXPECT_TRUE(jwks.notes.empty());
}

TEST(JwksParse, AcceptsKubernetesShapedJwks) {
  // What kube-apiserver serves at /openid/v1/jwks (members in its order).
  json k = jwkJson(rsaKey(), "");
  std::string text = R"({"keys":[{"use":"sig","kty":"RSA","kid":"Xy7-abc","alg":"RS256","n":")" +
                     k["n"].get<std::string>() + R"(","e":"AQAB"}]})";
  auto jwks = parseJwks(text);
  MESHID_ASSERT_OK(jwks);
  EXPECT_NE(jwks->find("Xy7-abc"), nullptr);
}

TEST(JwksParse, RefusesRsa1024) {
  EvpPkeyPtr weak = keygen("RSA", nullptr, 1024);
  auto r = parseJwks(jwksText({jwkJson(p256Key(), "ok"), jwkJson(weak.get(), "weak")}));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(messageOf(r), "kid \"weak\"");
  MESHID_EXPECT_CONTAINS(messageOf(r), "1024 bits is too weak");
}

TEST(JwksParse, SkipsEncryptionKeysWithANote) {
  json enc = jwkJson(rsaKey2(), "enc-1");
  enc["use"] = "enc";
  enc.erase("alg");
  json no_verify = jwkJson(p384Key(), "wrap-1");
  no_verify["key_ops"] = json::array({"wrapKey"});
  auto jwks = parseJwks(jwksText({jwkJson(rsaKey(), "sig-1"), enc, no_verify}));
  MESHID_ASSERT_OK(jwks);
  EXPECT_EQ(jwks->size(), 1u);
  EXPECT_EQ(jwks->find("enc-1"), nullptr);
  EXPECT_EQ(jwks->find("wrap-1"), nullptr);
  ASSERT_EQ(jwks->notes.size(), 2u);
  MESHID_EXPECT_CONTAINS(jwks->notes[0], "use is \"enc\"");
  MESHID_EXPECT_CONTAINS(jwks->notes[1], "key_ops");
  // A token under the skipped kid is an unknown kid, not a verified one.
  expectRefused(verifyJwt(sign(rsaKey2(), "enc-1"), *jwks, options()), "",
                "unknown key id \"enc-1\"");
}

TEST(JwksParse, IgnoresPrivateMembersAndNeverStoresThem) {
  // A private JWK published by mistake: take the real private members.
  json rsa = jwkJson(rsaKey(), "leaky-rsa");
  json ec = jwkJson(p256Key(), "leaky-ec");
  auto put = [](json& j, const char* member, const EVP_PKEY* key, const char* param) {
    BIGNUM* bn = nullptr;
    ASSERT_EQ(EVP_PKEY_get_bn_param(key, param, &bn), 1);
    BignumPtr owned(bn);
    std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
    j[member] = base64UrlEncode(bytes);
  };
  put(rsa, "d", rsaKey(), OSSL_PKEY_PARAM_RSA_D);
  put(rsa, "p", rsaKey(), OSSL_PKEY_PARAM_RSA_FACTOR1);
  put(rsa, "q", rsaKey(), OSSL_PKEY_PARAM_RSA_FACTOR2);
  put(ec, "d", p256Key(), OSSL_PKEY_PARAM_PRIV_KEY);
  auto jwks = parseJwks(jwksText({rsa, ec}));
  MESHID_ASSERT_OK(jwks);
  ASSERT_EQ(jwks->size(), 2u);
  for (const auto& [kid, jwk] : jwks->keys) {
    BIGNUM* priv = nullptr;
    const char* param =
        jwk.type == JwkType::kRsa ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY;
    EXPECT_NE(EVP_PKEY_get_bn_param(jwk.key.get(), param, &priv), 1) << kid;
    BN_free(priv);
    ERR_clear_error();
  }
  ASSERT_EQ(jwks->notes.size(), 2u);
  MESHID_EXPECT_CONTAINS(jwks->notes[0], "private members (d, p, q) ignored");
  MESHID_EXPECT_NOT_CONTAINS(jwks->notes[0], rsa["d"].get<std::string>().substr(0, 16));
  // The keys still verify tokens.
  MESHID_EXPECT_OK(verifyJwt(sign(rsaKey(), "leaky-rsa"), *jwks, options()));
}

TEST(JwksParse, RefusesMalformedJson) {
  for (std::string_view bad :
       {"", "{", "not json", "{\"keys\": [}", "[]", "{\"keys\": {}}", "{\"keys\": \"x\"}",
        "{\"nokeys\": []}", "{\"keys\": [1]}", "{\"keys\": []} trailing"}) {
    auto r = parseJwks(bad);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << bad;
  }
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks("{\"keys\": [}")), "jwks is not valid JSON");
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks("[]")), "\"keys\" array");
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks("{\"keys\": [1]}")),
                         "jwks key 0 is not a JSON object");
}

TEST(JwksParse, RefusesDuplicateJsonMembers) {
  // Two "n" members: nlohmann would keep the last, another parser the first.
  json k = jwkJson(rsaKey(), "dup");
  std::string text = jwksText({k});
  std::string n = "\"n\":\"" + k["n"].get<std::string>() + "\"";
  std::string twice = text;
  twice.replace(twice.find(n), n.size(), n + "," + n);
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(twice)), "duplicate member \"n\"");
}

TEST(JwksParse, RefusesDeepNesting) {
  std::string deep = "{\"keys\":[],\"x\":" + std::string(100, '[') + std::string(100, ']') + "}";
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(deep)), "nested deeper");
}

TEST(JwksParse, RefusesDuplicateKids) {
  auto r = parseJwks(jwksText({jwkJson(rsaKey(), "same"), jwkJson(p256Key(), "same")}));
  MESHID_EXPECT_CONTAINS(messageOf(r), "duplicate kid \"same\"");
  auto r2 = parseJwks(jwksText({jwkJson(rsaKey(), ""), jwkJson(p256Key(), "")}));
  MESHID_EXPECT_CONTAINS(messageOf(r2), "second key without kid");
}

TEST(JwksParse, RefusesMissingOrMalformedMembers) {
  struct Case {
    const EVP_PKEY* key;
    const char* member;
    json value;  // null = erase
    const char* message;
  };
  const std::vector<Case> cases = {
      {rsaKey(), "kty", nullptr, "has no kty"},
      {rsaKey(), "n", nullptr, "has no n"},
      {rsaKey(), "e", nullptr, "has no e"},
      {rsaKey(), "n", 12345, "n is not a string"},
      {rsaKey(), "n", "AQAB=", "n is not valid base64url"},
      {rsaKey(), "e", "A+AB", "e is not valid base64url"},
      {rsaKey(), "kid", 7, "kid is not a string"},
      {rsaKey(), "e", "AQABAQABAQAB", "exponent e of 9 bytes"},
      {rsaKey(), "e", "Ag", "invalid public key"},  // e = 2
      {p256Key(), "crv", nullptr, "has no crv"},
      {p256Key(), "x", nullptr, "has no x"},
      {p256Key(), "y", nullptr, "has no y"},
      {p256Key(), "x", base64UrlEncode(std::string(31, '\x01')), "must be 32 bytes"},
      {p384Key(), "y", base64UrlEncode(std::string(32, '\x01')), "must be 48 bytes"},
      {rsaKey(), "key_ops", "verify", "key_ops is not an array"},
      {rsaKey(), "use", json::array(), "use is not a string"},
  };
  for (const auto& c : cases) {
    json k = jwkJson(c.key, "k1");
    if (c.value.is_null()) {
      k.erase(c.member);
    } else {
      k[c.member] = c.value;
    }
    auto r = parseJwks(jwksText({k}));
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << c.member << " " << c.message;
    MESHID_EXPECT_CONTAINS(messageOf(r), c.message);
  }
}

TEST(JwksParse, RefusesPointNotOnCurve) {
  json k = jwkJson(p256Key(), "off-curve");
  std::string y = orThrow(base64UrlDecode(k["y"].get<std::string>()));
  y[31] = static_cast<char>(y[31] ^ 1);
  k["y"] = base64UrlEncode(y);
  auto r = parseJwks(jwksText({k}));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(messageOf(r), "kid \"off-curve\"");
  MESHID_EXPECT_CONTAINS(messageOf(r), "invalid public key");
}

TEST(JwksParse, RefusesAlgThatContradictsKeyType) {
  json k = jwkJson(rsaKey(), "rsa-as-ec");
  k["alg"] = "ES256";
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(jwksText({k}))), "alg ES256 does not fit an RSA key");
  json e = jwkJson(p256Key(), "p256-as-384");
  e["alg"] = "ES384";
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(jwksText({e}))), "does not fit an EC P-256 key");
}

TEST(JwksParse, SkipsUnsupportedKeyKindsButRefusesAnEmptyResult) {
  json oct = {{"kty", "oct"}, {"kid", "hmac"}, {"k", base64UrlEncode("secret-secret")}};
  json okp = {{"kty", "OKP"}, {"kid", "ed"}, {"crv", "Ed25519"}, {"x", "AAAA"}};
  json p521 = {{"kty", "EC"}, {"kid", "p521"}, {"crv", "P-521"}, {"x", "AAAA"}, {"y", "AAAA"}};
  json rsa_oaep = jwkJson(rsaKey2(), "oaep");
  rsa_oaep["alg"] = "RSA-OAEP";
  auto jwks = parseJwks(jwksText({oct, okp, p521, rsa_oaep, jwkJson(rsaKey(), "good")}));
  MESHID_ASSERT_OK(jwks);
  EXPECT_EQ(jwks->size(), 1u);
  EXPECT_NE(jwks->find("good"), nullptr);
  std::string notes;
  for (const auto& n : jwks->notes) {
    notes += n + "\n";
  }
  MESHID_EXPECT_CONTAINS(notes, "kty \"oct\" is not supported");
  MESHID_EXPECT_CONTAINS(notes, "kty \"OKP\" is not supported");
  MESHID_EXPECT_CONTAINS(notes, "curve \"P-521\" is not supported");
  MESHID_EXPECT_CONTAINS(notes, "alg \"RSA-OAEP\" is not a supported signature algorithm");
  MESHID_EXPECT_NOT_CONTAINS(notes, base64UrlEncode("secret-secret"));

  auto none = parseJwks(jwksText({oct}));
  MESHID_EXPECT_CONTAINS(messageOf(none), "no usable signature key");
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks("{\"keys\":[]}")), "no usable signature key");
}

TEST(JwksParse, RefusesOversizedInputAndTooManyKeys) {
  std::string big = "{\"keys\":[],\"pad\":\"" + std::string(kMaxJwksBytes, 'a') + "\"}";
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(big)), "larger than the limit");
  std::vector<json> many;
  for (size_t i = 0; i <= kMaxJwksKeys; ++i) {
    many.push_back({{"kty", "oct"}, {"kid", std::to_string(i)}});
  }
  MESHID_EXPECT_CONTAINS(messageOf(parseJwks(jwksText(many))), "more than the limit of 100");
}

// ---------------------------------------------------------------- round trips

TEST(JwtVerify, AcceptsRs256KubernetesTokenAndExposesItsClaims) {
  std::string token = sign(rsaKey(), "rsa-1");
  auto r = verify(token);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->kid, "rsa-1");
  EXPECT_EQ(r->alg, "RS256");
  EXPECT_EQ(r->issuer, kIssuer);
  EXPECT_EQ(r->subject, "system:serviceaccount:payments:web");
  EXPECT_EQ(r->audiences, std::vector<std::string>{"istio-ca"});
  EXPECT_EQ(r->expires_at, fromUnixSeconds(kNow + 3600));
  EXPECT_EQ(r->not_before, fromUnixSeconds(kNow - 60));
  EXPECT_EQ(r->issued_at, fromUnixSeconds(kNow - 60));
  ASSERT_TRUE(r->kubernetes.has_value());
  EXPECT_EQ(r->kubernetes->namespace_name, "payments");
  EXPECT_EQ(r->kubernetes->service_account_name, "web");
  EXPECT_EQ(r->kubernetes->service_account_uid, "6d1c-sa");
  EXPECT_EQ(r->kubernetes->pod_name, "web-5f7c");
  EXPECT_EQ(r->kubernetes->pod_uid, "9a2b-pod");
  ASSERT_NE(r->claims, nullptr);
  ASSERT_NE(r->header, nullptr);
  EXPECT_EQ(*r->claims, k8sClaims());
  EXPECT_EQ((*r->header)["alg"], "RS256");
  EXPECT_EQ((*r->header)["kid"], "rsa-1");
}

TEST(JwtVerify, AcceptsEs256WithP256) {
  std::string token = sign(p256Key(), "ec-256");
  EXPECT_EQ(orThrow(base64UrlDecode(split(token).signature)).size(), 64u);
  auto r = verify(token);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->alg, "ES256");
  EXPECT_EQ(r->kid, "ec-256");
}

TEST(JwtVerify, AcceptsEs384WithP384) {
  std::string token = sign(p384Key(), "ec-384");
  EXPECT_EQ(orThrow(base64UrlDecode(split(token).signature)).size(), 96u);
  auto r = verify(token);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->alg, "ES384");
}

TEST(JwtVerify, AcceptsRsaPssAndSha512WhenTheJwkDoesNotPinAlg) {
  json k = jwkJson(rsaKey(), "any-rsa");
  k.erase("alg");
  Jwks jwks = jwksOf({k});
  for (const char* alg : {"PS256", "PS384", "PS512", "RS384", "RS512"}) {
    std::string token = sign(rsaKey(), "any-rsa", k8sClaims(), {{"alg", alg}});
    auto r = verifyJwt(token, jwks, options());
    MESHID_EXPECT_OK(r);
    if (r.ok()) {
      EXPECT_EQ(r->alg, alg);
    }
  }
}

TEST(JwtVerify, AcceptsTokenWithoutKidWhenTheJwksHasOneKey) {
  Jwks single = jwksOf({jwkJson(p256Key(), "only")});
  auto r = verifyJwt(sign(p256Key(), ""), single, options());
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->kid, "only");
}

// ---------------------------------------------------------------- algorithm refusals

TEST(JwtVerify, RefusesAlgNone) {
  for (const char* none : {"none", "None", "NONE"}) {
    std::string token = craft({{"alg", none}, {"kid", "rsa-1"}}, k8sClaims(), "");
    ASSERT_EQ(token.back(), '.');  // the unsecured JWS form: empty signature
    expectRefused(verify(token), token, "alg none is not accepted");
  }
}

TEST(JwtVerify, RefusesHs256KeyedWithThePublicKeyPem) {
  // The libjwt alg-confusion attack: HMAC with the public key PEM as the secret.
  for (const char* kid : {"rsa-1", "ec-256"}) {
    const EVP_PKEY* key = std::string_view(kid) == "rsa-1" ? rsaKey() : p256Key();
    std::string pem = orThrow(publicKeyToPem(key));
    json header = {{"alg", "HS256"}, {"kid", kid}, {"typ", "JWT"}};
    std::string input = base64UrlEncode(header.dump()) + "." + base64UrlEncode(k8sClaims().dump());
    std::string token = input + "." + base64UrlEncode(hmacSha256(pem, input));
    expectRefused(verify(token), token, "alg HS256 (HMAC) is not accepted");
  }
  for (const char* alg : {"HS384", "HS512"}) {
    std::string token = craft({{"alg", alg}, {"kid", "rsa-1"}}, k8sClaims(), "sig");
    expectRefused(verify(token), token, std::string("alg ") + alg + " (HMAC) is not accepted");
  }
}

TEST(JwtVerify, RefusesUnknownAlgAndMissingAlg) {
  for (const char* alg : {"ES512", "EdDSA", "RS1", "", "rs256"}) {
    std::string token = craft({{"alg", alg}, {"kid", "rsa-1"}}, k8sClaims(), "sig");
    expectRefused(verify(token), token, "is not supported (accepted: RS256");
  }
  std::string no_alg = craft({{"kid", "rsa-1"}}, k8sClaims(), "sig");
  expectRefused(verify(no_alg), no_alg, "token header has no alg");
  std::string num_alg = craft({{"alg", 256}, {"kid", "rsa-1"}}, k8sClaims(), "sig");
  expectRefused(verify(num_alg), num_alg, "alg is not a string");
}

TEST(JwtVerify, RefusesAlgThatDoesNotFitTheKeyType) {
  // ES256 header naming an RSA key, with a real ES256 signature from an EC key.
  std::string es_on_rsa = sign(p256Key(), "rsa-1", k8sClaims(), {{"alg", "ES256"}});
  expectRefused(verify(es_on_rsa), es_on_rsa,
                "token alg ES256 does not fit key \"rsa-1\", an RSA key");
  std::string rs_on_ec = sign(rsaKey(), "ec-256");
  expectRefused(verify(rs_on_ec), rs_on_ec, "token alg RS256 does not fit key \"ec-256\"");
  std::string es384_on_p256 = sign(p384Key(), "ec-256");
  expectRefused(verify(es384_on_p256), es384_on_p256,
                "token alg ES384 does not fit key \"ec-256\", an EC P-256 key");
  std::string es256_on_p384 = sign(p256Key(), "ec-384");
  expectRefused(verify(es256_on_p384), es256_on_p384, "does not fit key \"ec-384\"");
}

TEST(JwtVerify, RefusesAlgOtherThanTheJwkPin) {
  // rsa-1 is published with "alg": "RS256"; a valid PS256 signature is still refused.
  std::string token = sign(rsaKey(), "rsa-1", k8sClaims(), {{"alg", "PS256"}});
  expectRefused(verify(token), token, "token alg PS256 differs from alg RS256 of key \"rsa-1\"");
}

TEST(JwtVerify, RefusesCritHeader) {
  std::string token = sign(rsaKey(), "rsa-1", k8sClaims(), {{"crit", {"b64"}}, {"b64", false}});
  expectRefused(verify(token), token, "crit");
}

TEST(JwtVerify, NeverUsesAKeyEmbeddedInTheHeader) {
  // Signed by an attacker key that the header carries as "jwk": still refused.
  EvpPkeyPtr attacker = keygen("EC", "P-256");
  Jwks single = jwksOf({jwkJson(p256Key(), "only")});
  json header = {{"jwk", jwkJson(attacker.get(), "")}};
  std::string token = sign(attacker.get(), "", k8sClaims(), header);
  expectRefused(verifyJwt(token, single, options()), token, "signature does not verify");
}

// ---------------------------------------------------------------- key selection

TEST(JwtVerify, RefusesUnknownKid) {
  std::string token = sign(rsaKey(), "abc");
  expectRefused(verify(token), token, "token signed with unknown key id \"abc\"");
  std::string num = craft({{"alg", "RS256"}, {"kid", 1}}, k8sClaims(), "sig");
  expectRefused(verify(num), num, "kid is not a string");
}

TEST(JwtVerify, RefusesMissingKidWithAMultiKeyJwks) {
  std::string token = sign(rsaKey(), "");
  expectRefused(verify(token), token, "no kid, and the JWKS holds 4 keys");
}

TEST(JwtVerify, RefusesTokenSignedByAnotherKeyUnderAKnownKid) {
  std::string token = sign(rsaKey2(), "rsa-1");
  expectRefused(verify(token), token, "token signature does not verify with key \"rsa-1\"");
}

TEST(JwtVerify, RefusesEverythingWithAnEmptyJwks) {
  Jwks empty;
  std::string token = sign(rsaKey(), "");
  expectRefused(verifyJwt(token, empty, options()), token, "JWKS is empty");
}

// ---------------------------------------------------------------- time claims

TEST(JwtVerify, RefusesTokenExpiredJustPastTheSkew) {
  json claims = k8sClaims();
  claims["exp"] = kNow - 61;
  claims["iat"] = kNow - 3700;
  claims["nbf"] = kNow - 3700;
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token, "token expired at 2026-09-21T");
  MESHID_EXPECT_CONTAINS(messageOf(verify(token)), "allowed clock skew 60s");
}

TEST(JwtVerify, AcceptsTokenExpiredWithinTheSkew) {
  json claims = k8sClaims();
  claims["exp"] = kNow - 60;
  MESHID_EXPECT_OK(verify(sign(rsaKey(), "rsa-1", claims)));
  claims["exp"] = kNow;
  JwtVerifyOptions strict = options();
  strict.skew = Seconds{0};
  MESHID_EXPECT_OK(verify(sign(rsaKey(), "rsa-1", claims), strict));
  claims["exp"] = kNow - 1;
  EXPECT_FALSE(verify(sign(rsaKey(), "rsa-1", claims), strict).ok());
}

TEST(JwtVerify, AcceptsFractionalNumericDates) {
  json claims = k8sClaims();
  claims["exp"] = static_cast<double>(kNow) + 0.5;
  claims["iat"] = static_cast<double>(kNow) - 0.5;
  auto r = verify(sign(p256Key(), "ec-256", claims));
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->expires_at, fromUnixSeconds(kNow));  // rounded toward expiry
}

TEST(JwtVerify, RefusesMissingOrMalformedExp) {
  json claims = k8sClaims();
  claims.erase("exp");
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token, "token has no exp claim");
  for (json bad : {json("1790003600"), json(-1), json(true), json(1e30), json(9'000'000'000)}) {
    claims["exp"] = bad;
    std::string t = sign(rsaKey(), "rsa-1", claims);
    expectRefused(verify(t), t, "token exp claim is not a NumericDate");
  }
}

TEST(JwtVerify, RefusesNbfInTheFuture) {
  json claims = k8sClaims();
  claims["nbf"] = kNow + 61;
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token, "token is not valid before 2026-09-21T");
  claims["nbf"] = kNow + 60;
  MESHID_EXPECT_OK(verify(sign(rsaKey(), "rsa-1", claims)));
}

TEST(JwtVerify, RefusesIatInTheFuture) {
  json claims = k8sClaims();
  claims["iat"] = kNow + 300;
  claims.erase("nbf");
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token, "token was issued in the future");
}

// ---------------------------------------------------------------- issuer and audience

TEST(JwtVerify, RefusesWrongAudience) {
  json claims = k8sClaims();
  claims["aud"] = "https://kubernetes.default.svc";
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token,
                "token audience [https://kubernetes.default.svc] does not include istio-ca");
  JwtVerifyOptions two = options();
  two.audiences = {"istio-ca", "meshid"};
  expectRefused(verify(token, two), token, "does not include any of [istio-ca, meshid]");
  claims.erase("aud");
  std::string none = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(none), none, "token has no aud claim; expected istio-ca");
  claims["aud"] = json::array({"istio-ca", 7});
  std::string mixed = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(mixed), mixed, "aud claim holds a value that is not a string");
}

TEST(JwtVerify, AcceptsAudienceAsStringOrArray) {
  json claims = k8sClaims();
  claims["aud"] = json::array({"https://kubernetes.default.svc", "istio-ca"});
  auto r = verify(sign(rsaKey(), "rsa-1", claims));
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->audiences.size(), 2u);
  claims["aud"] = "istio-ca";
  auto s = verify(sign(rsaKey(), "rsa-1", claims));
  MESHID_ASSERT_OK(s);
  EXPECT_EQ(s->audiences, std::vector<std::string>{"istio-ca"});
}

TEST(JwtVerify, RefusesWrongIssuer) {
  json claims = k8sClaims();
  claims["iss"] = "https://evil.example";
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token,
                "token issuer \"https://evil.example\" is not the trusted issuer");
  claims.erase("iss");
  std::string none = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(none), none, "token has no iss claim");
  claims["iss"] = 5;
  std::string num = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(num), num, "token iss claim is not a string");
}

TEST(JwtVerify, SkipsIssuerAndAudienceChecksWhenNotConfigured) {
  json claims = k8sClaims();
  claims.erase("iss");
  claims.erase("aud");
  JwtVerifyOptions open = options();
  open.issuer.clear();
  open.audiences.clear();
  MESHID_EXPECT_OK(verify(sign(rsaKey(), "rsa-1", claims), open));
}

TEST(JwtVerify, RefusesMalformedKubernetesClaim) {
  struct Case {
    json value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"payments", "kubernetes.io is not a JSON object"},
      {json{{"serviceaccount", {{"name", "web"}}}}, "kubernetes.io has no namespace"},
      {json{{"namespace", "payments"}}, "has no serviceaccount object"},
      {json{{"namespace", 3}, {"serviceaccount", {{"name", "web"}}}},
       "kubernetes.io.namespace is not a string"},
      {json{{"namespace", "payments"}, {"serviceaccount", {{"uid", "x"}}}},
       "kubernetes.io.serviceaccount has no name"},
      {json{{"namespace", "payments"}, {"serviceaccount", {{"name", "web"}}}, {"pod", 1}},
       "kubernetes.io.pod is not a JSON object"},
  };
  for (const auto& c : cases) {
    json claims = k8sClaims();
    claims["kubernetes.io"] = c.value;
    std::string token = sign(rsaKey(), "rsa-1", claims);
    expectRefused(verify(token), token, c.message);
  }
  json claims = k8sClaims();
  claims.erase("kubernetes.io");
  auto r = verify(sign(rsaKey(), "rsa-1", claims));
  MESHID_ASSERT_OK(r);
  EXPECT_FALSE(r->kubernetes.has_value());
}

// ---------------------------------------------------------------- tampering

TEST(JwtVerify, RefusesTamperedPayload) {
  std::string token = sign(rsaKey(), "rsa-1");
  Parts p = split(token);
  json claims = k8sClaims();
  claims["kubernetes.io"]["namespace"] = "kube-system";
  std::string forged = p.header + "." + base64UrlEncode(claims.dump()) + "." + p.signature;
  expectRefused(verify(forged), forged, "token signature does not verify with key \"rsa-1\"");
}

TEST(JwtVerify, RefusesTamperedSignature) {
  for (const char* kid : {"rsa-1", "ec-256", "ec-384"}) {
    const EVP_PKEY* key = std::string_view(kid) == "rsa-1"    ? rsaKey()
                          : std::string_view(kid) == "ec-256" ? p256Key()
                                                              : p384Key();
    std::string token = sign(key, kid);
    Parts p = split(token);
    std::string sig = orThrow(base64UrlDecode(p.signature));
    sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
    std::string forged = p.header + "." + p.payload + "." + base64UrlEncode(sig);
    expectRefused(verify(forged), forged, "token signature does not verify");
  }
  std::string token = sign(rsaKey(), "rsa-1");
  std::string no_sig = token.substr(0, token.rfind('.') + 1);
  expectRefused(verify(no_sig), no_sig, "token signature is empty");
}

TEST(JwtVerify, RefusesDerEncodedEcdsaSignature) {
  json header = {{"alg", "ES256"}, {"kid", "ec-256"}};
  std::string input = base64UrlEncode(header.dump()) + "." + base64UrlEncode(k8sClaims().dump());
  std::string der = derEcdsa(p256Key(), input);
  ASSERT_NE(der.size(), 64u);
  std::string token = input + "." + base64UrlEncode(der);
  expectRefused(verify(token), token, "ES256 signature must be 64 bytes (raw R||S), got ");
  MESHID_EXPECT_CONTAINS(messageOf(verify(token)), "DER-encoded");
  std::string short_sig = input + "." + base64UrlEncode(std::string(63, '\x01'));
  expectRefused(verify(short_sig), short_sig, "must be 64 bytes");
}

// ---------------------------------------------------------------- form

TEST(JwtVerify, RefusesMalformedBase64Url) {
  std::string token = sign(rsaKey(), "rsa-1");
  Parts p = split(token);
  std::string plus = token;
  plus[plus.find('.') + 3] = '+';
  expectRefused(verify(plus), plus, "outside base64url and '.'");
  expectRefused(verify(p.header + "==." + p.payload + "." + p.signature), token, "'='");
  expectRefused(verify(" " + token), token, "whitespace at offset 0");
  expectRefused(verify("Bearer " + token), token, "without \"Bearer \"");
  expectRefused(verify(token + "\n"), token, "whitespace");
  // 4k+1 characters cannot be base64url.
  auto impossible = [](const std::string& part) {
    return part.substr(0, part.size() - part.size() % 4) + "A";
  };
  std::string bad_header = impossible(p.header) + "." + p.payload + "." + p.signature;
  expectRefused(verify(bad_header), bad_header, "token header is not valid base64url");
  std::string bad_sig = p.header + "." + p.payload + "." + impossible(p.signature);
  expectRefused(verify(bad_sig), bad_sig, "token signature is not valid base64url");
}

TEST(JwtVerify, RefusesTwoOrFourParts) {
  std::string token = sign(rsaKey(), "rsa-1");
  Parts p = split(token);
  std::string two = p.header + "." + p.payload;
  expectRefused(verify(two), two, "token has 2 parts");
  std::string four = token + "." + p.signature;
  expectRefused(verify(four), four, "token has 4 parts");
  std::string five = token + ".x.y";
  expectRefused(verify(five), five, "JWE");
  expectRefused(verify(""), "", "token is empty");
  expectRefused(verify(".."), "..", "token header is not valid JSON");
}

TEST(JwtVerify, RefusesOversizedToken) {
  json claims = k8sClaims();
  claims["pad"] = std::string(kMaxJwtBytes, 'x');
  std::string token = sign(rsaKey(), "rsa-1", claims);
  expectRefused(verify(token), token, "larger than the limit of 16384 bytes");
}

TEST(JwtVerify, RefusesHeaderThatIsNotAJsonObject) {
  std::string claims = base64UrlEncode(k8sClaims().dump());
  for (std::string_view header : {"[\"RS256\"]", "\"RS256\"", "null", "{\"alg\":", "RS256"}) {
    std::string token = base64UrlEncode(header) + "." + claims + ".c2ln";
    auto r = verify(token);
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << header;
    MESHID_EXPECT_CONTAINS(messageOf(r), "token header is not");
  }
}

TEST(JwtVerify, RefusesDuplicateHeaderMembers) {
  // {"alg":"RS256","alg":"none"}: parsers disagree on which alg wins.
  std::string header = R"({"alg":"RS256","kid":"rsa-1","alg":"RS256"})";
  std::string token = base64UrlEncode(header) + "." + base64UrlEncode(k8sClaims().dump()) + ".c2ln";
  expectRefused(verify(token), token, "duplicate member \"alg\"");
}

TEST(JwtVerify, RefusesSignedPayloadThatIsNotAJsonObject) {
  // A correctly signed payload that is not a claims set.
  for (std::string_view payload : {"[1,2]", "not json", "{\"exp\":1,\"exp\":2}"}) {
    json header = {{"alg", "RS256"}, {"kid", "rsa-1"}};
    std::string input = base64UrlEncode(header.dump()) + "." + base64UrlEncode(payload);
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, const_cast<EVP_PKEY*>(rsaKey()));
    size_t len = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size());
    std::string token = input + "." + base64UrlEncode(sig);
    expectRefused(verify(token), token, "token payload is not");
  }
}

// ---------------------------------------------------------------- helpers

TEST(JwtSign, RefusesAlgThatDoesNotFitTheKey) {
  EXPECT_EQ(errorOf(signJwt({{"alg", "ES256"}}, k8sClaims(), rsaKey())).code,
            Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(messageOf(signJwt({{"alg", "RS256"}}, k8sClaims(), p256Key())),
                         "does not fit an EC P-256 key");
  MESHID_EXPECT_CONTAINS(messageOf(signJwt({{"alg", "HS256"}}, k8sClaims(), rsaKey())),
                         "header alg must be one of");
  MESHID_EXPECT_CONTAINS(messageOf(signJwt(json::array(), k8sClaims(), rsaKey())),
                         "must be JSON objects");
  EvpPkeyPtr ed = keygen("ED25519", nullptr);
  MESHID_EXPECT_CONTAINS(messageOf(signJwt(json::object(), k8sClaims(), ed.get())),
                         "cannot be used for JWS");
}

TEST(JwtSign, JwkHoldsPublicMembersOnly) {
  json rsa = jwkJson(rsaKey(), "k");
  EXPECT_EQ(rsa["kty"], "RSA");
  EXPECT_EQ(rsa["e"], "AQAB");
  EXPECT_EQ(rsa["use"], "sig");
  EXPECT_EQ(rsa["kid"], "k");
  json ec = jwkJson(p384Key(), "");
  EXPECT_EQ(ec["crv"], "P-384");
  EXPECT_EQ(ec["alg"], "ES384");
  EXPECT_FALSE(ec.contains("kid"));
  EXPECT_EQ(orThrow(base64UrlDecode(ec["x"].get<std::string>())).size(), 48u);
  for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "k"}) {
    EXPECT_FALSE(rsa.contains(secret)) << secret;
    EXPECT_FALSE(ec.contains(secret)) << secret;
  }
}

}  // namespace
}  // namespace meshid::pki
