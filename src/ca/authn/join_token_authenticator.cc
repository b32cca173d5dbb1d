#include "ca/authn/join_token_authenticator.h"

#include "ca/join_token.h"

namespace meshid::ca {

Result<std::optional<Identity>> JoinTokenAuthenticator::authenticate(
    const CallerCredentials& credentials) {
  if (!credentials.bearer_token || !credentials.bearer_token->starts_with(kJoinTokenPrefix)) {
    return std::optional<Identity>();
  }
  if (!looksLikeJoinToken(*credentials.bearer_token)) {
    return Error::unauthenticated("malformed join token");
  }
  std::string hash = hashJoinToken(*credentials.bearer_token);
  auto record = store_.consumeJoinToken(hash, clock_.now());
  if (!record.ok()) {
    switch (record.error().code) {
      case Code::kNotFound:
        return Error::unauthenticated("unknown join token");
      case Code::kFailedPrecondition:
        return Error::unauthenticated(record.error().message);
      default:
        return Error::unavailable("cannot check join token: " + record.error().message);
    }
  }
  auto id = pki::SpiffeId::parse(record->spiffe_id);
  if (!id.ok()) {
    return Error::internal("stored join token has an invalid SPIFFE ID");
  }
  // The hash prefix identifies the token in logs without revealing it.
  return std::optional<Identity>(Identity{std::move(id).value(), "join_token", hash.substr(0, 12)});
}

}  // namespace meshid::ca
