// JWKS parsing and JWS verification on arbitrary bytes: never crashes, never
// accepts a token that fails the claim rules, and base64url stays canonical.
// Input: JWKS text, a NUL byte, then the token (without a NUL, the first half
// and the second half). When the JWKS part does not parse, the token is
// checked against a fixed JWKS, so mutated tokens reach signature and claim
// checking; scripts/fuzz.sh seeds tokens signed by its keys.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/err.h>

#include "pki/jwt.h"
#include "pki/key.h"

namespace {

// Public keys only (the private halves were thrown away after signing the seeds).
constexpr std::string_view kFixedJwks =
    R"({"keys":[{"alg":"ES256","crv":"P-256","kid":"fuzz-ec","kty":"EC","use":"sig","x":"LE0QsH)"
    R"(XmNxXvSUUicg8MkHr82OP8JViUKn9jCi2CqHY","y":"haKvh5Ecy3M0WBUGVSCU-LedqHqVf6u4UvnuMuHUq-U")"
    R"(},{"alg":"RS256","e":"AQAB","kid":"fuzz-rsa","kty":"RSA","n":"w0RcDyx-rANl-1sCF1xp0Wpduj)"
    R"(IRJJjb9r0rcXyrSgTgR6AxF7kwYZW4toPuFl_pRcO3RXjmXGed5mBkTzkFyF0-mYAxF9qPtfbfyJrcWMxer74pQY)"
    R"(Tg1GAH_FeDbRaNyGuwKSl3befXqoFRsD9G4SE8zQ9H07JBTUNwdzPupUFE8Y7nQcFeXxrtsfUcfILDqWEUtIomxp)"
    R"(i5WsGvNzqJuqmhvtJd5gR35uB_iRL6_EUXR_PsLMw-mzpG9IRF6S2DQqGveE-OHiUJNXCx_Idrs0-TQlcFXPPaKk)"
    R"(E3SaXnvVwNVkD_CkO7G4RAp5R1kIAaCO2LLgrAW8AX_MuK3Y81eQ","use":"sig"}]})";

const meshid::pki::Jwks& fixedJwks() {
  static const meshid::pki::Jwks jwks = [] {
    auto r = meshid::pki::parseJwks(kFixedJwks);
    if (!r.ok()) {
      std::abort();
    }
    return std::move(r).value();
  }();
  return jwks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view jwks_text =
      nul != std::string_view::npos ? input.substr(0, nul) : input.substr(0, size / 2);
  std::string_view token =
      nul != std::string_view::npos ? input.substr(nul + 1) : input.substr(size / 2);

  auto parsed = meshid::pki::parseJwks(jwks_text);
  if (parsed.ok()) {
    if (parsed->size() == 0 || parsed->size() > meshid::pki::kMaxJwksKeys) {
      std::abort();
    }
    for (const auto& [kid, jwk] : parsed->keys) {
      if (kid != jwk.kid || !jwk.key || !meshid::pki::checkKeyStrength(jwk.key.get()).ok()) {
        std::abort();
      }
    }
  }
  const meshid::pki::Jwks& jwks = parsed.ok() ? *parsed : fixedJwks();

  meshid::pki::JwtVerifyOptions options;
  options.issuer = "https://kubernetes.default.svc.cluster.local";
  options.audiences = {"istio-ca"};
  options.now = meshid::fromUnixSeconds(1'790'000'000);
  auto verified = meshid::pki::verifyJwt(token, jwks, options);
  if (verified.ok()) {
    const auto& v = *verified;
    if (!v.header || !v.claims || v.issuer != options.issuer ||
        v.expires_at + options.skew < options.now || jwks.find(v.kid) == nullptr ||
        std::find(v.audiences.begin(), v.audiences.end(), "istio-ca") == v.audiences.end()) {
      std::abort();
    }
  } else if (verified.error().code != meshid::Code::kUnauthenticated &&
             verified.error().code != meshid::Code::kInternal) {
    std::abort();
  }

  // base64url: decode(encode(x)) == x, and only the canonical spelling decodes.
  auto decoded = meshid::pki::base64UrlDecode(token);
  if (decoded.ok() && meshid::pki::base64UrlEncode(*decoded) != token) {
    std::abort();
  }
  auto round = meshid::pki::base64UrlDecode(meshid::pki::base64UrlEncode(token));
  if (!round.ok() || *round != token) {
    std::abort();
  }
  ERR_clear_error();
  return 0;
}
