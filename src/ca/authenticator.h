// Authenticator: turns a credential into an Identity. Authenticators are tried
// in order; the first that recognises the credential decides.
#pragma once

#include <optional>
#include <string_view>

#include "ca/identity.h"
#include "common/result.h"

namespace meshid::ca {

class Authenticator {
 public:
  virtual ~Authenticator() = default;

  virtual std::string_view name() const = 0;

  // nullopt: the credential is not this authenticator's kind (try the next).
  // An Error (UNAUTHENTICATED, or UNAVAILABLE when a dependency is down): the
  // credential is this kind and is refused. Thread-safe; may block briefly.
  virtual Result<std::optional<Identity>> authenticate(const CallerCredentials& credentials) = 0;
};

}  // namespace meshid::ca
