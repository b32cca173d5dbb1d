// What the agent holds and serves: for each identity the certificate in hand
// (immutable snapshots, swapped whole), and the trust bundle. Consumers (SDS
// and Workload API streams, file sinks) subscribe and are told of every
// change; they then read the snapshots they need.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "pki/spiffe_id.h"

namespace meshid::agent {

// One issued X.509-SVID with its key, in every encoding a consumer needs.
// The key bytes are wiped when the last reader lets go.
struct IssuedSvid {
  pki::SpiffeId spiffe_id;
  std::string chain_pem;               // leaf + intermediates
  std::vector<std::string> chain_der;  // leaf first
  std::string key_pem;                 // PKCS#8
  std::string key_der;                 // PKCS#8
  std::string serial_hex;
  SystemTime not_before;
  SystemTime not_after;
  SystemTime received;
  uint64_t bundle_version = 0;  // the bundle it was verified against

  IssuedSvid(pki::SpiffeId id) : spiffe_id(std::move(id)) {}
  ~IssuedSvid();
  IssuedSvid(const IssuedSvid&) = delete;
  IssuedSvid& operator=(const IssuedSvid&) = delete;
};

struct Bundle {
  uint64_t version = 0;
  std::string trust_domain;            // "example.org"
  std::vector<std::string> roots_pem;  // one PEM per root
  std::vector<std::string> roots_der;
  std::string sha256;  // over the concatenated DER, hex

  std::string pem() const;  // all roots, concatenated
  std::string der() const;
};

class SecretCache {
 public:
  using Listener = std::function<void()>;

  // Serves the SVID in hand for its identity; replaces the previous one.
  void publish(std::shared_ptr<const IssuedSvid> svid);
  // The identity's certificate expired with no replacement: stop serving it.
  void withdraw(const pki::SpiffeId& id);
  void setBundle(std::shared_ptr<const Bundle> bundle);

  std::shared_ptr<const IssuedSvid> svid(const std::string& spiffe_id) const;
  std::shared_ptr<const Bundle> bundle() const;
  std::vector<std::shared_ptr<const IssuedSvid>> all() const;

  // Listeners run on the thread that made the change, outside the state
  // lock, and never after unsubscribe() returns.
  uint64_t subscribe(Listener listener);
  void unsubscribe(uint64_t id);
  size_t listenerCount() const;

 private:
  void notify();

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const IssuedSvid>> svids_;  // guarded by mu_
  std::shared_ptr<const Bundle> bundle_;                            // guarded by mu_

  mutable std::mutex listeners_mu_;         // held while listeners run
  std::map<uint64_t, Listener> listeners_;  // guarded by listeners_mu_
  uint64_t next_listener_ = 1;              // guarded by listeners_mu_
};

}  // namespace meshid::agent
