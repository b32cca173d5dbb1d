// The agent's side of meshid's CA API: Sign, GetTrustBundle, WatchTrustBundle
// over TLS, verifying the CA's serving certificate against the bundle the
// agent holds. Several CA addresses are tried in turn: a transport failure
// (UNAVAILABLE, DEADLINE_EXCEEDED) moves to the next, a refusal does not.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/secret_cache.h"
#include "common/result.h"

namespace meshid::agent {

struct SignedChain {
  std::vector<std::string> chain_pem;  // leaf first, then intermediates
  std::shared_ptr<const Bundle> bundle;
  std::string address;  // the CA that answered
};

// A proto TrustBundle's content, checked: the trust domain, every root a
// self-signed CA, the digest as stated.
Result<std::shared_ptr<const Bundle>> makeBundle(uint64_t version, std::string_view trust_domain,
                                                 const std::vector<std::string>& roots_pem,
                                                 const pki::TrustDomain& expected);

class CaClient {
 public:
  CaClient(AgentConfig::Ca config, pki::TrustDomain trust_domain, AgentMetrics& metrics);
  ~CaClient();

  // The roots that the CA's serving certificate must chain to.
  void setTrust(std::string roots_pem);
  // The client certificate presented over mTLS (the agent's own SVID); empty
  // strings for none.
  void setClientIdentity(std::string chain_pem, std::string key_pem);

  // bearer: sent as "authorization: Bearer ..." when set.
  Result<SignedChain> sign(const std::string& csr_pem, Seconds ttl,
                           const std::optional<std::string>& bearer);

  // Bootstrap with a pinned fingerprint: fetch the bundle without verifying
  // the server, then accept it only if one root's SHA-256 is the pin.
  Result<std::shared_ptr<const Bundle>> fetchPinnedBundle(const std::string& pin_hex);

  // Blocks streaming WatchTrustBundle from one CA, calling on_bundle for each
  // message, until the stream ends (returns its error) or cancelWatch().
  Result<void> watchBundle(uint64_t known_version,
                           const std::function<void(std::shared_ptr<const Bundle>)>& on_bundle);
  void cancelWatch();

  std::string lastGoodAddress() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::agent
