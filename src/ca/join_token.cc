#include "ca/join_token.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>

namespace meshid::ca {

Result<std::string> generateJoinToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return Error::internal("cannot draw random bytes for a join token");
  }
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, raw, sizeof raw);
  std::string token(kJoinTokenPrefix);
  for (int i = 0; i < n; ++i) {
    char c = static_cast<char>(b64[i]);
    if (c == '=')
      break;
    token += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return token;
}

bool looksLikeJoinToken(std::string_view token) {
  if (!token.starts_with(kJoinTokenPrefix) || token.size() != kJoinTokenPrefix.size() + 43) {
    return false;
  }
  return std::all_of(token.begin() + kJoinTokenPrefix.size(), token.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::string hashJoinToken(std::string_view token) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
  std::string out;
  for (unsigned char b : md)
    out += fmt::format("{:02x}", b);
  return out;
}

}  // namespace meshid::ca
