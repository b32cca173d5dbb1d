#include "pki/jwt.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <set>

#include "common/duration.h"
#include "pki/key.h"
#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

using nlohmann::json;

// OpenSSL objects only this file uses.
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, OsslDeleter<OSSL_PARAM_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OsslDeleter<ECDSA_SIG_free>>;

// Real tokens and JWKS nest 3 or 4 levels; the cap keeps a hostile document
// from making later recursive walks (dump) deep.
constexpr int kMaxJsonDepth = 32;
// 2200-01-01T00:00:00Z: NumericDates past it are refused (and SystemTime in
// nanoseconds would overflow in 2262).
constexpr int64_t kMaxNumericDate = 7'258'118'400;
// OpenSSL refuses larger exponents for big moduli anyway; 2^64 keeps verify cheap.
constexpr size_t kMaxRsaExponentBytes = 8;
constexpr size_t kMaxRsaModulusBytes = 8192 / 8 + 1;  // a leading zero is tolerated
constexpr size_t kMaxEchoChars = 64;

enum class AlgKind { kRsaPkcs1, kRsaPss, kEcdsa };

struct AlgInfo {
  std::string_view name;
  AlgKind kind;
  const EVP_MD* (*md)();
  JwkType key_type;
};

constexpr std::array<AlgInfo, 8> kAlgs{{
    {"RS256", AlgKind::kRsaPkcs1, EVP_sha256, JwkType::kRsa},
    {"RS384", AlgKind::kRsaPkcs1, EVP_sha384, JwkType::kRsa},
    {"RS512", AlgKind::kRsaPkcs1, EVP_sha512, JwkType::kRsa},
    {"PS256", AlgKind::kRsaPss, EVP_sha256, JwkType::kRsa},
    {"PS384", AlgKind::kRsaPss, EVP_sha384, JwkType::kRsa},
    {"PS512", AlgKind::kRsaPss, EVP_sha512, JwkType::kRsa},
    {"ES256", AlgKind::kEcdsa, EVP_sha256, JwkType::kEcP256},
    {"ES384", AlgKind::kEcdsa, EVP_sha384, JwkType::kEcP384},
}};
constexpr std::string_view kAcceptedAlgs = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384";

const AlgInfo* findAlg(std::string_view name) {
  for (const auto& a : kAlgs) {
    if (a.name == name) {
      return &a;
    }
  }
  return nullptr;
}

std::string_view defaultAlg(JwkType type) {
  switch (type) {
    case JwkType::kRsa:
      return "RS256";
    case JwkType::kEcP256:
      return "ES256";
    case JwkType::kEcP384:
      return "ES384";
  }
  return "RS256";
}

// Bytes of one ECDSA coordinate (and of r, s in a raw JWS signature).
size_t coordinateBytes(JwkType type) {
  return type == JwkType::kEcP384 ? 48 : 32;
}

// Attacker-chosen text (kid, alg, audiences) made safe to put in a message:
// quotes, backslashes, control and non-ASCII bytes become '?', long text is cut.
std::string printable(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, kMaxEchoChars)) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ? '?' : ch);
  }
  if (s.size() > kMaxEchoChars) {
    out += "...";
  }
  return out;
}

std::string printableList(const std::vector<std::string>& items) {
  constexpr size_t kMaxItems = 8;
  std::string out = "[";
  for (size_t i = 0; i < items.size() && i < kMaxItems; ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += printable(items[i]);
  }
  if (items.size() > kMaxItems) {
    out += ", ...";
  }
  return out + "]";
}

// ---- base64url ----

constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<int8_t, 256> kBase64UrlValues = [] {
  std::array<int8_t, 256> t{};
  for (auto& v : t) {
    v = -1;
  }
  for (size_t i = 0; i < kBase64UrlAlphabet.size(); ++i) {
    t[static_cast<unsigned char>(kBase64UrlAlphabet[i])] = static_cast<int8_t>(i);
  }
  return t;
}();

bool isBase64UrlChar(char c) {
  return kBase64UrlValues[static_cast<unsigned char>(c)] >= 0;
}
bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// ---- strict JSON ----

// Refuses what nlohmann::json would silently accept: duplicate object members
// (the last one wins there, while another verifier might take the first) and
// absurd nesting. Errors name a byte offset, never the input.
class StrictJsonChecker final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override {
    if (!enter()) {
      return false;
    }
    members_.emplace_back();
    return true;
  }
  bool key(string_t& val) override {
    if (members_.empty() || !members_.back().insert(val).second) {
      error_ = fmt::format("duplicate member \"{}\"", printable(val));
      return false;
    }
    return true;
  }
  bool end_object() override {
    if (!members_.empty()) {
      members_.pop_back();
    }
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*elements*/) override { return enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*ex*/) override {
    error_ = fmt::format("syntax error at byte {}", position);
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) {
      error_ = fmt::format("nested deeper than {} levels", kMaxJsonDepth);
      return false;
    }
    return true;
  }

  int depth_ = 0;
  std::vector<std::set<std::string>> members_;
  std::string error_;
};

// The error is kInvalidArgument with a short reason and no input text.
Result<json> parseStrictJson(std::string_view text) {
  const char* first = text.data();
  const char* last = text.data() + text.size();
  try {
    StrictJsonChecker checker;
    if (!json::sax_parse(first, last, &checker)) {
      return Error::invalidArgument(checker.error().empty() ? "malformed" : checker.error());
    }
    json doc = json::parse(first, last, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      return Error::invalidArgument("malformed");
    }
    return doc;
  } catch (const json::exception&) {
    return Error::invalidArgument("malformed");
  }
}

// nullptr when obj has no member name.
const json* member(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

// The member as a string: nullopt when absent, an error when not a string.
Result<std::optional<std::string>> optionalString(const json& obj, const char* name,
                                                  std::string_view where) {
  const json* v = member(obj, name);
  if (v == nullptr) {
    return std::optional<std::string>();
  }
  if (!v->is_string()) {
    return Error::invalidArgument(fmt::format("{} {} is not a string", where, name));
  }
  return std::optional<std::string>(v->get<std::string>());
}

// ---- keys ----

Result<JwkType> jwkTypeOf(const EVP_PKEY* key) {
  if (key == nullptr) {
    return Error::invalidArgument("no key");
  }
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    return JwkType::kRsa;
  }
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    std::string group = ecGroupName(key);
    if (group == "prime256v1" || group == "P-256") {
      return JwkType::kEcP256;
    }
    if (group == "secp384r1" || group == "P-384") {
      return JwkType::kEcP384;
    }
  }
  return Error::invalidArgument(fmt::format(
      "{} key cannot be used for JWS here: use RSA, EC P-256 or EC P-384", describeKey(key)));
}

// Builds a public key from OSSL_PARAMs and runs OpenSSL's public-key check
// (for EC: point on the curve and in the group; for RSA: odd modulus without
// small factors, sane exponent).
Result<EvpPkeyPtr> publicKeyFromParams(const char* type, OSSL_PARAM_BLD* bld) {
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!params || !ctx) {
    return opensslError(Code::kInternal, "cannot allocate key parameters");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return opensslError(Code::kInvalidArgument, "invalid public key");
  }
  EvpPkeyPtr key(raw);
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return opensslError(Code::kInvalidArgument, "invalid public key");
  }
  drainOpensslErrors();
  return key;
}

Result<EvpPkeyPtr> rsaPublicKey(std::string_view n, std::string_view e) {
  if (n.empty() || n.size() > kMaxRsaModulusBytes) {
    return Error::invalidArgument(
        fmt::format("modulus n of {} bytes is outside 1..{} bytes", n.size(), kMaxRsaModulusBytes));
  }
  if (e.empty() || e.size() > kMaxRsaExponentBytes) {
    return Error::invalidArgument(fmt::format("exponent e of {} bytes is outside 1..{} bytes",
                                              e.size(), kMaxRsaExponentBytes));
  }
  const auto* nb = reinterpret_cast<const unsigned char*>(n.data());
  const auto* eb = reinterpret_cast<const unsigned char*>(e.data());
  BignumPtr bn_n(BN_bin2bn(nb, static_cast<int>(n.size()), nullptr));
  BignumPtr bn_e(BN_bin2bn(eb, static_cast<int>(e.size()), nullptr));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return opensslError(Code::kInternal, "cannot build RSA key parameters");
  }
  return publicKeyFromParams("RSA", bld.get());
}

Result<EvpPkeyPtr> ecPublicKey(JwkType type, std::string_view x, std::string_view y) {
  size_t len = coordinateBytes(type);
  if (x.size() != len || y.size() != len) {
    return Error::invalidArgument(
        fmt::format("coordinates must be {} bytes each for {}, got x {} and y {}", len,
                    jwkTypeName(type), x.size(), y.size()));
  }
  std::string point;
  point.reserve(1 + 2 * len);
  point.push_back('\x04');  // uncompressed point
  point.append(x);
  point.append(y);
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  const char* group = type == JwkType::kEcP384 ? "P-384" : "P-256";
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return opensslError(Code::kInternal, "cannot build EC key parameters");
  }
  return publicKeyFromParams("EC", bld.get());
}

// A base64url member that must be present.
Result<std::string> requiredBytes(const json& obj, const char* name, std::string_view where) {
  MESHID_ASSIGN_OR_RETURN(std::optional<std::string> text, optionalString(obj, name, where));
  if (!text) {
    return Error::invalidArgument(fmt::format("{} has no {}", where, name));
  }
  auto bytes = base64UrlDecode(*text);
  if (!bytes.ok()) {
    return bytes.error().wrap(fmt::format("{} {} is not valid base64url", where, name));
  }
  return std::move(bytes).value();
}

// One JWKS entry: a Jwk, nullopt when skipped (with a note), or an error that
// refuses the whole set.
Result<std::optional<Jwk>> parseJwk(const json& j, size_t index, std::vector<std::string>& notes) {
  std::string where = fmt::format("jwks key {}", index);
  if (!j.is_object()) {
    return Error::invalidArgument(where + " is not a JSON object");
  }
  MESHID_ASSIGN_OR_RETURN(std::optional<std::string> kid, optionalString(j, "kid", where));
  if (kid) {
    where += fmt::format(" (kid \"{}\")", printable(*kid));
  }
  MESHID_ASSIGN_OR_RETURN(std::optional<std::string> kty, optionalString(j, "kty", where));
  if (!kty) {
    return Error::invalidArgument(where + " has no kty");
  }
  // Private members are never read; a JWKS that publishes them leaks keys.
  std::vector<std::string> secrets;
  for (const char* name : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}) {
    if (member(j, name) != nullptr) {
      secrets.emplace_back(name);
    }
  }
  if (!secrets.empty()) {
    std::string list;
    for (const auto& s : secrets) {
      list += (list.empty() ? "" : ", ") + s;
    }
    notes.push_back(fmt::format(
        "{}: private members ({}) ignored; a JWKS should publish public keys only", where, list));
  }
  MESHID_ASSIGN_OR_RETURN(std::optional<std::string> use, optionalString(j, "use", where));
  if (use && *use != "sig") {
    notes.push_back(fmt::format("{}: skipped, use is \"{}\", not \"sig\"", where, printable(*use)));
    return std::optional<Jwk>();
  }
  if (const json* ops = member(j, "key_ops")) {
    if (!ops->is_array()) {
      return Error::invalidArgument(where + " key_ops is not an array");
    }
    bool verify = false;
    for (const auto& op : *ops) {
      if (!op.is_string()) {
        return Error::invalidArgument(where + " key_ops holds a non-string");
      }
      verify = verify || op.get_ref<const std::string&>() == "verify";
    }
    if (!verify) {
      notes.push_back(where + ": skipped, key_ops does not include \"verify\"");
      return std::optional<Jwk>();
    }
  }
  MESHID_ASSIGN_OR_RETURN(std::optional<std::string> alg, optionalString(j, "alg", where));
  const AlgInfo* alg_info = nullptr;
  if (alg) {
    alg_info = findAlg(*alg);
    if (alg_info == nullptr) {
      notes.push_back(fmt::format("{}: skipped, alg \"{}\" is not a supported signature algorithm",
                                  where, printable(*alg)));
      return std::optional<Jwk>();
    }
  }

  Jwk jwk;
  jwk.kid = kid.value_or("");
  jwk.alg = alg.value_or("");
  if (*kty == "RSA") {
    jwk.type = JwkType::kRsa;
    MESHID_ASSIGN_OR_RETURN(std::string n, requiredBytes(j, "n", where));
    MESHID_ASSIGN_OR_RETURN(std::string e, requiredBytes(j, "e", where));
    auto key = rsaPublicKey(n, e);
    if (!key.ok()) {
      return key.error().wrap(where);
    }
    jwk.key = std::move(key).value();
  } else if (*kty == "EC") {
    MESHID_ASSIGN_OR_RETURN(std::optional<std::string> crv, optionalString(j, "crv", where));
    if (!crv) {
      return Error::invalidArgument(where + " has no crv");
    }
    if (*crv == "P-256") {
      jwk.type = JwkType::kEcP256;
    } else if (*crv == "P-384") {
      jwk.type = JwkType::kEcP384;
    } else {
      notes.push_back(fmt::format("{}: skipped, curve \"{}\" is not supported (P-256, P-384)",
                                  where, printable(*crv)));
      return std::optional<Jwk>();
    }
    MESHID_ASSIGN_OR_RETURN(std::string x, requiredBytes(j, "x", where));
    MESHID_ASSIGN_OR_RETURN(std::string y, requiredBytes(j, "y", where));
    auto key = ecPublicKey(jwk.type, x, y);
    if (!key.ok()) {
      return key.error().wrap(where);
    }
    jwk.key = std::move(key).value();
  } else {
    notes.push_back(
        fmt::format("{}: skipped, kty \"{}\" is not supported (RSA, EC)", where, printable(*kty)));
    return std::optional<Jwk>();
  }
  if (alg_info != nullptr && alg_info->key_type != jwk.type) {
    return Error::invalidArgument(fmt::format("{}: alg {} does not fit an {} key", where,
                                              alg_info->name, jwkTypeName(jwk.type)));
  }
  auto strong = checkKeyStrength(jwk.key.get());
  if (!strong.ok()) {
    return strong.error().wrap(where);
  }
  return std::optional<Jwk>(std::move(jwk));
}

// ---- signatures ----

// Raw R||S (JWS) to DER ECDSA-Sig-Value (OpenSSL).
Result<std::string> rawToDerSignature(std::string_view raw) {
  size_t half = raw.size() / 2;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BignumPtr r(BN_bin2bn(bytes, static_cast<int>(half), nullptr));
  BignumPtr s(BN_bin2bn(bytes + half, static_cast<int>(half), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return opensslError(Code::kInternal, "cannot build ECDSA signature");
  }
  r.release();  // owned by sig now
  s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) {
    return opensslError(Code::kInternal, "cannot encode ECDSA signature");
  }
  std::string der(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &out) != len) {
    return opensslError(Code::kInternal, "cannot encode ECDSA signature");
  }
  return der;
}

// DER ECDSA-Sig-Value (OpenSSL) to raw R||S with coordinate-sized halves.
Result<std::string> derToRawSignature(std::string_view der, size_t half) {
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &in, static_cast<long>(der.size())));
  if (!sig) {
    return opensslError(Code::kInternal, "cannot decode ECDSA signature");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(2 * half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(r, out, static_cast<int>(half)) < 0 ||
      BN_bn2binpad(s, out + half, static_cast<int>(half)) < 0) {
    return opensslError(Code::kInternal, "cannot encode ECDSA signature");
  }
  return raw;
}

// Sets RFC 7518 §3.5 PSS parameters: MGF1 with the same digest, salt as long
// as the digest.
bool setPss(EVP_PKEY_CTX* pctx, const EVP_MD* md) {
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1;
}

Error unauthenticated(std::string message) {
  return Error::unauthenticated(std::move(message));
}

Result<void> verifySignature(const AlgInfo& alg, const Jwk& jwk, std::string_view signing_input,
                             std::string_view signature) {
  std::string der;
  if (alg.kind == AlgKind::kEcdsa) {
    size_t want = 2 * coordinateBytes(jwk.type);
    if (signature.size() != want) {
      std::string hint;
      if (!signature.empty() && signature[0] == '\x30') {
        hint = "; DER-encoded ECDSA signatures are not valid in a JWS";
      }
      return unauthenticated(fmt::format("token {} signature must be {} bytes (raw R||S), got {}{}",
                                         alg.name, want, signature.size(), hint));
    }
    MESHID_ASSIGN_OR_RETURN(der, rawToDerSignature(signature));
    signature = der;
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* md = alg.md();
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, jwk.key.get()) != 1 ||
      (alg.kind == AlgKind::kRsaPss && !setPss(pctx, md))) {
    return opensslError(Code::kInternal, "cannot start signature verification");
  }
  int r = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  drainOpensslErrors();
  if (r != 1) {
    return unauthenticated(fmt::format("token signature does not verify with key \"{}\" ({})",
                                       printable(jwk.kid), alg.name));
  }
  return okResult();
}

// ---- claims ----

// A NumericDate (RFC 7519 §2) in whole seconds; fractions round toward the
// stricter side (down for exp, up for nbf/iat). nullopt when not a number
// in 0..kMaxNumericDate.
std::optional<int64_t> numericDate(const json& v, bool round_up) {
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(kMaxNumericDate)) {
      return std::nullopt;
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if (i < 0 || i > kMaxNumericDate) {
      return std::nullopt;
    }
    return i;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(kMaxNumericDate)) {
      return std::nullopt;
    }
    return static_cast<int64_t>(round_up ? std::ceil(d) : std::floor(d));
  }
  return std::nullopt;
}

Result<std::optional<int64_t>> dateClaim(const json& claims, const char* name, bool round_up) {
  const json* v = member(claims, name);
  if (v == nullptr) {
    return std::optional<int64_t>();
  }
  std::optional<int64_t> t = numericDate(*v, round_up);
  if (!t) {
    return unauthenticated(
        fmt::format("token {} claim is not a NumericDate (seconds since 1970, before 2200)", name));
  }
  return t;
}

std::string timeText(int64_t unix_seconds) {
  return formatRfc3339(fromUnixSeconds(unix_seconds));
}

Result<std::vector<std::string>> audienceClaim(const json& claims) {
  std::vector<std::string> out;
  const json* aud = member(claims, "aud");
  if (aud == nullptr) {
    return out;
  }
  if (aud->is_string()) {
    out.push_back(aud->get<std::string>());
    return out;
  }
  if (aud->is_array()) {
    for (const auto& a : *aud) {
      if (!a.is_string()) {
        return unauthenticated("token aud claim holds a value that is not a string");
      }
      out.push_back(a.get<std::string>());
    }
    return out;
  }
  return unauthenticated("token aud claim is neither a string nor an array of strings");
}

// Typed optional string claim inside a nested object; error when present but
// not a string.
Result<std::string> nestedString(const json& obj, const char* name, std::string_view path) {
  const json* v = member(obj, name);
  if (v == nullptr) {
    return std::string();
  }
  if (!v->is_string()) {
    return unauthenticated(fmt::format("token claim {}.{} is not a string", path, name));
  }
  return v->get<std::string>();
}

Result<std::optional<KubernetesClaims>> kubernetesClaims(const json& claims) {
  const json* k8s = member(claims, "kubernetes.io");
  if (k8s == nullptr) {
    return std::optional<KubernetesClaims>();
  }
  if (!k8s->is_object()) {
    return unauthenticated("token claim kubernetes.io is not a JSON object");
  }
  KubernetesClaims out;
  MESHID_ASSIGN_OR_RETURN(out.namespace_name, nestedString(*k8s, "namespace", "kubernetes.io"));
  if (out.namespace_name.empty()) {
    return unauthenticated("token claim kubernetes.io has no namespace");
  }
  const json* sa = member(*k8s, "serviceaccount");
  if (sa == nullptr || !sa->is_object()) {
    return unauthenticated("token claim kubernetes.io has no serviceaccount object");
  }
  MESHID_ASSIGN_OR_RETURN(out.service_account_name,
                          nestedString(*sa, "name", "kubernetes.io.serviceaccount"));
  if (out.service_account_name.empty()) {
    return unauthenticated("token claim kubernetes.io.serviceaccount has no name");
  }
  MESHID_ASSIGN_OR_RETURN(out.service_account_uid,
                          nestedString(*sa, "uid", "kubernetes.io.serviceaccount"));
  if (const json* pod = member(*k8s, "pod")) {
    if (!pod->is_object()) {
      return unauthenticated("token claim kubernetes.io.pod is not a JSON object");
    }
    MESHID_ASSIGN_OR_RETURN(out.pod_name, nestedString(*pod, "name", "kubernetes.io.pod"));
    MESHID_ASSIGN_OR_RETURN(out.pod_uid, nestedString(*pod, "uid", "kubernetes.io.pod"));
  }
  return std::optional<KubernetesClaims>(std::move(out));
}

// Decodes and parses one JSON-object part of the token; `what` is "header"
// or "payload".
Result<json> decodeJsonPart(std::string_view part, std::string_view what) {
  auto text = base64UrlDecode(part);
  if (!text.ok()) {
    return unauthenticated(
        fmt::format("token {} is not valid base64url: {}", what, text.error().message));
  }
  auto doc = parseStrictJson(*text);
  if (!doc.ok()) {
    return unauthenticated(
        fmt::format("token {} is not valid JSON: {}", what, doc.error().message));
  }
  if (!doc->is_object()) {
    return unauthenticated(fmt::format("token {} is not a JSON object", what));
  }
  return std::move(doc).value();
}

Result<const AlgInfo*> acceptedAlg(const json& header) {
  const json* alg = member(header, "alg");
  if (alg == nullptr) {
    return unauthenticated("token header has no alg");
  }
  if (!alg->is_string()) {
    return unauthenticated("token header alg is not a string");
  }
  const auto& name = alg->get_ref<const std::string&>();
  std::string lower;
  for (char c : name) {
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (lower == "none") {
    return unauthenticated("alg none is not accepted: tokens must carry a signature");
  }
  if (lower.starts_with("hs")) {
    return unauthenticated(fmt::format(
        "alg {} (HMAC) is not accepted: tokens must be signed with a private key whose public "
        "key is in the JWKS",
        printable(name)));
  }
  const AlgInfo* info = findAlg(name);
  if (info == nullptr) {
    return unauthenticated(
        fmt::format("alg \"{}\" is not supported (accepted: {})", printable(name), kAcceptedAlgs));
  }
  return info;
}

Result<const Jwk*> selectKey(const json& header, const Jwks& jwks) {
  const json* kid = member(header, "kid");
  if (kid != nullptr) {
    if (!kid->is_string()) {
      return unauthenticated("token header kid is not a string");
    }
    const auto& name = kid->get_ref<const std::string&>();
    const Jwk* jwk = jwks.find(name);
    if (jwk == nullptr) {
      return unauthenticated(fmt::format(
          "token signed with unknown key id \"{}\" (the JWKS holds {} key{}; refresh it if the "
          "issuer rotated its keys)",
          printable(name), jwks.size(), jwks.size() == 1 ? "" : "s"));
    }
    return jwk;
  }
  if (jwks.size() == 1) {
    return &jwks.keys.begin()->second;
  }
  if (jwks.size() == 0) {
    return unauthenticated("no verification keys: the JWKS is empty");
  }
  return unauthenticated(fmt::format(
      "token header has no kid, and the JWKS holds {} keys: a kid is required to choose one",
      jwks.size()));
}

}  // namespace

std::string_view jwkTypeName(JwkType type) {
  switch (type) {
    case JwkType::kRsa:
      return "RSA";
    case JwkType::kEcP256:
      return "EC P-256";
    case JwkType::kEcP384:
      return "EC P-384";
  }
  return "unknown";
}

const Jwk* Jwks::find(std::string_view kid) const {
  auto it = keys.find(kid);
  return it == keys.end() ? nullptr : &it->second;
}

std::string base64UrlEncode(std::string_view data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  size_t i = 0;
  auto byte = [&](size_t at) {
    return static_cast<uint32_t>(static_cast<unsigned char>(data[at]));
  };
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out.push_back(kBase64UrlAlphabet[(v >> 18) & 63]);
    out.push_back(kBase64UrlAlphabet[(v >> 12) & 63]);
    out.push_back(kBase64UrlAlphabet[(v >> 6) & 63]);
    out.push_back(kBase64UrlAlphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = byte(i) << 16;
    out.push_back(kBase64UrlAlphabet[(v >> 18) & 63]);
    out.push_back(kBase64UrlAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out.push_back(kBase64UrlAlphabet[(v >> 18) & 63]);
    out.push_back(kBase64UrlAlphabet[(v >> 12) & 63]);
    out.push_back(kBase64UrlAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> base64UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    int v = kBase64UrlValues[static_cast<unsigned char>(c)];
    if (v < 0) {
      if (c == '=') {
        return Error::invalidArgument("'=' padding is not allowed in base64url here");
      }
      if (isSpace(c)) {
        return Error::invalidArgument(fmt::format("whitespace at offset {}", i));
      }
      if (c == '+' || c == '/') {
        return Error::invalidArgument(fmt::format(
            "'{}' at offset {} is standard base64, not base64url (use '-' and '_')", c, i));
      }
      return Error::invalidArgument(
          fmt::format("character at offset {} is outside the base64url alphabet", i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (text.size() % 4 == 1) {
    return Error::invalidArgument(
        fmt::format("length {} is impossible for base64url (4k+1 characters)", text.size()));
  }
  if ((acc & ((1u << bits) - 1)) != 0) {
    return Error::invalidArgument("non-zero unused bits at the end (not a canonical encoding)");
  }
  return out;
}

Result<Jwks> parseJwks(std::string_view text) {
  if (text.size() > kMaxJwksBytes) {
    return Error::invalidArgument(fmt::format("jwks is {} bytes, larger than the limit of {} bytes",
                                              text.size(), kMaxJwksBytes));
  }
  auto doc = parseStrictJson(text);
  if (!doc.ok()) {
    return doc.error().wrap("jwks is not valid JSON");
  }
  const json* keys = doc->is_object() ? member(*doc, "keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    return Error::invalidArgument("jwks must be a JSON object with a \"keys\" array");
  }
  if (keys->size() > kMaxJwksKeys) {
    return Error::invalidArgument(
        fmt::format("jwks holds {} keys, more than the limit of {}", keys->size(), kMaxJwksKeys));
  }
  Jwks jwks;
  for (size_t i = 0; i < keys->size(); ++i) {
    MESHID_ASSIGN_OR_RETURN(std::optional<Jwk> jwk, parseJwk((*keys)[i], i, jwks.notes));
    if (!jwk) {
      continue;
    }
    if (jwks.keys.contains(jwk->kid)) {
      return Error::invalidArgument(
          jwk->kid.empty()
              ? fmt::format("jwks key {}: a second key without kid (keys must be told apart)", i)
              : fmt::format("jwks key {}: duplicate kid \"{}\"", i, printable(jwk->kid)));
    }
    std::string kid = jwk->kid;
    jwks.keys.emplace(std::move(kid), std::move(*jwk));
  }
  if (jwks.keys.empty()) {
    std::string why;
    for (const auto& note : jwks.notes) {
      why += "; " + note;
    }
    return Error::invalidArgument("jwks holds no usable signature key" + why);
  }
  return jwks;
}

Result<VerifiedJwt> verifyJwt(std::string_view token, const Jwks& jwks,
                              const JwtVerifyOptions& options) {
  MESHID_CHECK(options.now != SystemTime{});
  MESHID_CHECK(options.skew >= Seconds{0});
  if (token.empty()) {
    return unauthenticated("token is empty");
  }
  if (token.size() > kMaxJwtBytes) {
    return unauthenticated(fmt::format("token is {} bytes, larger than the limit of {} bytes",
                                       token.size(), kMaxJwtBytes));
  }
  std::array<size_t, 2> dots{};
  size_t ndots = 0;
  for (size_t i = 0; i < token.size(); ++i) {
    char c = token[i];
    if (c == '.') {
      if (ndots < dots.size()) {
        dots[ndots] = i;
      }
      ++ndots;
    } else if (!isBase64UrlChar(c)) {
      if (isSpace(c)) {
        return unauthenticated(fmt::format(
            "token contains whitespace at offset {} (pass the token alone, without \"Bearer \")",
            i));
      }
      if (c == '=') {
        return unauthenticated("token contains '=': JWS compact form is base64url without padding");
      }
      return unauthenticated(
          fmt::format("token contains a character outside base64url and '.' at offset {}", i));
    }
  }
  if (ndots != 2) {
    return unauthenticated(fmt::format(
        "token has {} parts separated by '.'; a signed JWT has 3 (header.payload.signature){}",
        ndots + 1, ndots == 4 ? ": encrypted JWTs (JWE) are not accepted" : ""));
  }
  std::string_view header_part = token.substr(0, dots[0]);
  std::string_view payload_part = token.substr(dots[0] + 1, dots[1] - dots[0] - 1);
  std::string_view signature_part = token.substr(dots[1] + 1);
  std::string_view signing_input = token.substr(0, dots[1]);

  MESHID_ASSIGN_OR_RETURN(json header, decodeJsonPart(header_part, "header"));
  MESHID_ASSIGN_OR_RETURN(const AlgInfo* alg, acceptedAlg(header));
  if (member(header, "crit") != nullptr) {
    return unauthenticated("token header has crit: no JWS extensions are supported");
  }
  MESHID_ASSIGN_OR_RETURN(const Jwk* jwk, selectKey(header, jwks));
  if (alg->key_type != jwk->type) {
    return unauthenticated(fmt::format("token alg {} does not fit key \"{}\", an {} key", alg->name,
                                       printable(jwk->kid), jwkTypeName(jwk->type)));
  }
  if (!jwk->alg.empty() && jwk->alg != alg->name) {
    return unauthenticated(fmt::format("token alg {} differs from alg {} of key \"{}\"", alg->name,
                                       jwk->alg, printable(jwk->kid)));
  }
  auto signature = base64UrlDecode(signature_part);
  if (!signature.ok()) {
    return unauthenticated("token signature is not valid base64url: " + signature.error().message);
  }
  if (signature->empty()) {
    return unauthenticated("token signature is empty");
  }
  MESHID_RETURN_IF_ERROR(verifySignature(*alg, *jwk, signing_input, *signature));

  // Only signed claims are parsed.
  MESHID_ASSIGN_OR_RETURN(json claims, decodeJsonPart(payload_part, "payload"));
  VerifiedJwt out;
  out.kid = jwk->kid;
  out.alg = std::string(alg->name);

  auto string_claim = [&](const char* name) -> Result<std::string> {
    const json* v = member(claims, name);
    if (v == nullptr) {
      return std::string();
    }
    if (!v->is_string()) {
      return unauthenticated(fmt::format("token {} claim is not a string", name));
    }
    return v->get<std::string>();
  };
  MESHID_ASSIGN_OR_RETURN(out.issuer, string_claim("iss"));
  MESHID_ASSIGN_OR_RETURN(out.subject, string_claim("sub"));
  MESHID_ASSIGN_OR_RETURN(out.audiences, audienceClaim(claims));
  MESHID_ASSIGN_OR_RETURN(std::optional<int64_t> exp, dateClaim(claims, "exp", false));
  MESHID_ASSIGN_OR_RETURN(std::optional<int64_t> nbf, dateClaim(claims, "nbf", true));
  MESHID_ASSIGN_OR_RETURN(std::optional<int64_t> iat, dateClaim(claims, "iat", true));

  // Whole seconds; differences cannot overflow (all values are below 2262).
  int64_t now = toUnixSeconds(options.now);
  int64_t skew = options.skew.count();
  auto now_text = [&] {
    return fmt::format("now {}, allowed clock skew {}s", formatRfc3339(options.now), skew);
  };
  if (!exp) {
    return unauthenticated("token has no exp claim: tokens without an expiry are not accepted");
  }
  if (now - *exp > skew) {
    return unauthenticated(fmt::format("token expired at {} ({})", timeText(*exp), now_text()));
  }
  if (nbf && *nbf - now > skew) {
    return unauthenticated(
        fmt::format("token is not valid before {} ({})", timeText(*nbf), now_text()));
  }
  if (iat && *iat - now > skew) {
    return unauthenticated(
        fmt::format("token was issued in the future, at {} ({})", timeText(*iat), now_text()));
  }
  if (!options.issuer.empty() && out.issuer != options.issuer) {
    if (member(claims, "iss") == nullptr) {
      return unauthenticated(
          fmt::format("token has no iss claim; expected issuer \"{}\"", printable(options.issuer)));
    }
    return unauthenticated(fmt::format("token issuer \"{}\" is not the trusted issuer \"{}\"",
                                       printable(out.issuer), printable(options.issuer)));
  }
  if (!options.audiences.empty()) {
    bool match = false;
    for (const auto& a : out.audiences) {
      for (const auto& want : options.audiences) {
        match = match || a == want;
      }
    }
    if (!match) {
      std::string want = options.audiences.size() == 1
                             ? printable(options.audiences.front())
                             : "any of " + printableList(options.audiences);
      if (out.audiences.empty()) {
        return unauthenticated(fmt::format("token has no aud claim; expected {}", want));
      }
      return unauthenticated(
          fmt::format("token audience {} does not include {}", printableList(out.audiences), want));
    }
  }
  MESHID_ASSIGN_OR_RETURN(out.kubernetes, kubernetesClaims(claims));

  out.expires_at = fromUnixSeconds(*exp);
  if (nbf) {
    out.not_before = fromUnixSeconds(*nbf);
  }
  if (iat) {
    out.issued_at = fromUnixSeconds(*iat);
  }
  out.header = std::make_shared<const json>(std::move(header));
  out.claims = std::make_shared<const json>(std::move(claims));
  return out;
}

Result<std::string> signJwt(const json& header, const json& claims, const EVP_PKEY* private_key) {
  if (!header.is_object() || !claims.is_object()) {
    return Error::invalidArgument("JWT header and claims must be JSON objects");
  }
  MESHID_ASSIGN_OR_RETURN(JwkType type, jwkTypeOf(private_key));
  const AlgInfo* alg = findAlg(defaultAlg(type));
  if (const json* wanted = member(header, "alg")) {
    alg = wanted->is_string() ? findAlg(wanted->get_ref<const std::string&>()) : nullptr;
    if (alg == nullptr) {
      return Error::invalidArgument(fmt::format("header alg must be one of {}", kAcceptedAlgs));
    }
    if (alg->key_type != type) {
      return Error::invalidArgument(
          fmt::format("alg {} does not fit an {} key", alg->name, jwkTypeName(type)));
    }
  }
  json full_header = header;
  full_header["alg"] = std::string(alg->name);
  std::string signing_input;
  try {
    signing_input = base64UrlEncode(full_header.dump()) + "." + base64UrlEncode(claims.dump());
  } catch (const json::exception&) {
    return Error::invalidArgument("JWT header or claims hold a string that is not UTF-8");
  }

  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* md = alg->md();
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, const_cast<EVP_PKEY*>(private_key)) != 1 ||
      (alg->kind == AlgKind::kRsaPss && !setPss(pctx, md))) {
    return opensslError(Code::kInternal, "cannot start JWT signature");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(signing_input.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, signing_input.size()) != 1) {
    return opensslError(Code::kInternal, "cannot size JWT signature");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     signing_input.size()) != 1) {
    return opensslError(Code::kInternal, "cannot sign JWT (is the key private?)");
  }
  sig.resize(len);
  if (alg->kind == AlgKind::kEcdsa) {
    MESHID_ASSIGN_OR_RETURN(sig, derToRawSignature(sig, coordinateBytes(type)));
  }
  return signing_input + "." + base64UrlEncode(sig);
}

Result<std::string> jwkFromPublicKey(const EVP_PKEY* key, std::string_view kid) {
  MESHID_ASSIGN_OR_RETURN(JwkType type, jwkTypeOf(key));
  auto bn_param = [&](const char* name, int pad) -> Result<std::string> {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
      return opensslError(Code::kInternal, fmt::format("cannot read key parameter {}", name));
    }
    BignumPtr bn(raw);
    int size = pad > 0 ? pad : BN_num_bytes(bn.get());
    std::string out(static_cast<size_t>(size), '\0');
    if (BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), size) < 0) {
      return opensslError(Code::kInternal, fmt::format("cannot encode key parameter {}", name));
    }
    return base64UrlEncode(out);
  };
  json jwk;
  if (!kid.empty()) {
    jwk["kid"] = std::string(kid);
  }
  jwk["use"] = "sig";
  jwk["alg"] = std::string(defaultAlg(type));
  if (type == JwkType::kRsa) {
    jwk["kty"] = "RSA";
    MESHID_ASSIGN_OR_RETURN(jwk["n"], bn_param(OSSL_PKEY_PARAM_RSA_N, 0));
    MESHID_ASSIGN_OR_RETURN(jwk["e"], bn_param(OSSL_PKEY_PARAM_RSA_E, 0));
  } else {
    int size = static_cast<int>(coordinateBytes(type));
    jwk["kty"] = "EC";
    jwk["crv"] = type == JwkType::kEcP384 ? "P-384" : "P-256";
    MESHID_ASSIGN_OR_RETURN(jwk["x"], bn_param(OSSL_PKEY_PARAM_EC_PUB_X, size));
    MESHID_ASSIGN_OR_RETURN(jwk["y"], bn_param(OSSL_PKEY_PARAM_EC_PUB_Y, size));
  }
  try {
    return jwk.dump();
  } catch (const json::exception&) {
    return Error::invalidArgument("kid is not valid UTF-8");
  }
}

}  // namespace meshid::pki
