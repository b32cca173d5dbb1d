// One-time join tokens: a host without Kubernetes gets its first certificate
// with one, then renews over mTLS. Only the token's SHA-256 is stored.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid::ca {

// Join tokens look like "mjt_" + 43 base64url characters (256 random bits), so
// an authenticator can tell them from JWTs at a glance.
inline constexpr std::string_view kJoinTokenPrefix = "mjt_";

Result<std::string> generateJoinToken();
bool looksLikeJoinToken(std::string_view token);
std::string hashJoinToken(std::string_view token);  // SHA-256, lowercase hex

}  // namespace meshid::ca
