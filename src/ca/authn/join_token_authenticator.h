#pragma once

#include "ca/authenticator.h"
#include "common/clock.h"
#include "store/store.h"

namespace meshid::ca {

// Bearer tokens shaped like join tokens ("mjt_..."). A token is spent by the
// first request that presents it, even if that request is refused later (a
// bad CSR needs a new token): one use, no race between two hosts.
class JoinTokenAuthenticator final : public Authenticator {
 public:
  JoinTokenAuthenticator(store::Store& store, const Clock& clock) : store_(store), clock_(clock) {}

  std::string_view name() const override { return "join_token"; }
  Result<std::optional<Identity>> authenticate(const CallerCredentials& credentials) override;

 private:
  store::Store& store_;
  const Clock& clock_;
};

}  // namespace meshid::ca
