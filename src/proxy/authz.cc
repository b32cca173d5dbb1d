#include "proxy/authz.h"

#include <fmt/format.h>

#include <algorithm>

namespace meshid::proxy {

Result<AllowList> AllowList::parse(const std::vector<std::string>& entries) {
  AllowList out;
  out.entries_ = entries;
  for (const auto& e : entries) {
    if (e.ends_with('/')) {
      // A prefix: what precedes the slash must be a valid SPIFFE ID with a path.
      auto id = pki::SpiffeId::parse(e.substr(0, e.size() - 1));
      if (!id.ok() || id->isTrustDomainId()) {
        return Error::invalidArgument(fmt::format(
            "allow entry \"{}\": a prefix is a SPIFFE ID with a path followed by '/'", e));
      }
      out.prefixes_.push_back(e);
      continue;
    }
    auto id = pki::SpiffeId::parse(e);
    if (!id.ok())
      return id.error().wrap(fmt::format("allow entry \"{}\"", e));
    (id->isTrustDomainId() ? out.domains_ : out.exact_).push_back(id->trustDomain().name());
    if (!id->isTrustDomainId())
      out.exact_.back() = id->str();
  }
  return out;
}

bool AllowList::allows(const pki::SpiffeId& peer) const {
  if (empty())
    return true;
  const std::string& s = peer.str();
  if (std::find(exact_.begin(), exact_.end(), s) != exact_.end())
    return true;
  if (std::find(domains_.begin(), domains_.end(), peer.trustDomain().name()) != domains_.end())
    return true;
  return std::any_of(prefixes_.begin(), prefixes_.end(),
                     [&](const std::string& p) { return s.size() > p.size() && s.starts_with(p); });
}

}  // namespace meshid::proxy
