// The proxy's allow lists (inbound `allow`, outbound `expected_ids`) on
// arbitrary entries and peers: AllowList::parse never crashes, and a list it
// accepts decides as its entries do one by one. Input: entries one per line,
// a NUL byte, then a peer's SPIFFE ID; without a NUL there is no fuzzed peer.
// Besides that peer, each entry is tried against IDs made from it.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pki/spiffe_id.h"
#include "proxy/authz.h"
#include "require.h"

namespace {

using meshid::pki::SpiffeId;
using meshid::proxy::AllowList;

using meshid::fuzz::require;

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty() && out.size() < 64) {
    size_t nl = text.find('\n');
    out.emplace_back(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  }
  return out;
}

void addPeer(std::vector<SpiffeId>& peers, std::string_view text) {
  if (auto id = SpiffeId::parse(text); id.ok()) {
    peers.push_back(std::move(id).value());
  }
}

// What one accepted entry allows, from its own shape: the ID itself, the
// whole trust domain, or IDs below a prefix of whole path segments.
void checkEntry(const std::string& entry, const AllowList& one, const SpiffeId& peer) {
  if (!one.allows(peer)) {
    return;
  }
  if (entry.ends_with('/')) {
    require(peer.str().size() > entry.size() && peer.str().starts_with(entry));
    return;
  }
  auto id = SpiffeId::parse(entry);
  require(id.ok());
  if (id->isTrustDomainId()) {
    require(peer.trustDomain() == id->trustDomain());
  } else {
    require(peer == *id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::vector<std::string> entries = lines(input.substr(0, nul));
  auto list = AllowList::parse(entries);
  if (!list.ok()) {
    return 0;
  }
  require(list->entries() == entries);
  require(list->empty() == entries.empty());

  std::vector<SpiffeId> peers;
  if (nul != std::string_view::npos) {
    addPeer(peers, input.substr(nul + 1));
  }
  std::vector<AllowList> singles;
  for (const auto& e : entries) {
    auto one = AllowList::parse({e});
    require(one.ok());  // a list is accepted only if each entry is
    singles.push_back(std::move(one).value());
    std::string_view id = e;
    if (id.ends_with('/')) {
      id.remove_suffix(1);
      require(!singles.back().allows(SpiffeId::parse(id).value()));  // below, not at, the prefix
      addPeer(peers, e + "x");
    } else {
      addPeer(peers, e + "/x");
    }
    addPeer(peers, id);
  }
  for (const auto& peer : peers) {
    bool any = entries.empty();
    for (size_t i = 0; i < entries.size(); ++i) {
      checkEntry(entries[i], singles[i], peer);
      any = any || singles[i].allows(peer);
    }
    // Order and company do not matter: the list allows what one of its
    // entries allows, and nothing else.
    require(list->allows(peer) == any);
  }
  // An exact entry admits itself.
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].ends_with('/')) {
      require(singles[i].allows(SpiffeId::parse(entries[i]).value()));
    }
  }
  return 0;
}
