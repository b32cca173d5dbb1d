// Who may talk to a listener (PeerAuthentication + AuthorizationPolicy's
// principals in one): allow lists of SPIFFE IDs, trust domains and path
// prefixes, checked on the verified peer's ID. An empty list allows every
// peer the TLS layer verified; a non-empty one denies everything else.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "pki/spiffe_id.h"

namespace meshid::proxy {

class AllowList {
 public:
  // Entries: "spiffe://td/exact/id", "spiffe://td" (a whole trust domain), or
  // "spiffe://td/ns/payments/" (a prefix of whole path segments).
  static Result<AllowList> parse(const std::vector<std::string>& entries);

  bool empty() const { return exact_.empty() && domains_.empty() && prefixes_.empty(); }
  bool allows(const pki::SpiffeId& peer) const;
  // As configured, for /listeners.
  const std::vector<std::string>& entries() const { return entries_; }

 private:
  std::vector<std::string> entries_;
  std::vector<std::string> exact_;
  std::vector<std::string> domains_;
  std::vector<std::string> prefixes_;
};

}  // namespace meshid::proxy
