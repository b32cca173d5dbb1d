// SPIFFE IDs and trust domains, validated exactly as the SPIFFE ID standard
// says (PROTOCOLS.md §4).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace meshid::pki {

constexpr size_t kMaxSpiffeIdBytes = 2048;
constexpr size_t kMaxTrustDomainBytes = 255;

class TrustDomain {
 public:
  // "example.org" or "spiffe://example.org"; lowercase letters, digits, '.',
  // '-', '_' only.
  static Result<TrustDomain> parse(std::string_view text);

  const std::string& name() const { return name_; }
  std::string idString() const { return "spiffe://" + name_; }  // the bundle key
  bool operator==(const TrustDomain&) const = default;

 private:
  friend class SpiffeId;
  explicit TrustDomain(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

class SpiffeId {
 public:
  static Result<SpiffeId> parse(std::string_view uri);
  // spiffe://<td>/ns/<namespace>/sa/<service-account>, each part validated.
  static Result<SpiffeId> forServiceAccount(const TrustDomain& td, std::string_view ns,
                                            std::string_view sa);
  // spiffe://<td>, the ID a CA certificate may carry.
  static SpiffeId forTrustDomain(const TrustDomain& td);

  const std::string& str() const { return uri_; }
  const TrustDomain& trustDomain() const { return td_; }
  std::string_view path() const;  // "" or "/ns/x/sa/y"
  bool isTrustDomainId() const { return path().empty(); }
  // {namespace, service account} when the path has the Kubernetes shape.
  std::optional<std::pair<std::string, std::string>> serviceAccount() const;

  bool operator==(const SpiffeId& o) const { return uri_ == o.uri_; }

 private:
  SpiffeId(TrustDomain td, std::string uri) : td_(std::move(td)), uri_(std::move(uri)) {}
  TrustDomain td_;
  std::string uri_;
};

}  // namespace meshid::pki
