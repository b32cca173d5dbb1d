// A signing CA as files: Istio's `cacerts` layout or cert-manager's secret
// layout (PROTOCOLS.md §5).
#pragma once

#include <filesystem>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/key.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

enum class CaLayout { kIstioCacerts, kCertManager };
std::string_view caLayoutName(CaLayout layout);

// Istio cacerts file names.
inline constexpr const char* kCaCertFile = "ca-cert.pem";
inline constexpr const char* kCaKeyFile = "ca-key.pem";
inline constexpr const char* kCertChainFile = "cert-chain.pem";
inline constexpr const char* kRootCertFile = "root-cert.pem";
// cert-manager secret keys.
inline constexpr const char* kTlsCrtFile = "tls.crt";
inline constexpr const char* kTlsKeyFile = "tls.key";
inline constexpr const char* kCaCrtFile = "ca.crt";

struct CaMaterial {
  CaLayout layout = CaLayout::kIstioCacerts;
  X509Ptr signing_cert;
  EvpPkeyPtr signing_key;
  // The chain served after a leaf: the signing certificate first, then any CA
  // above it up to (not including) a self-signed root.
  std::vector<X509Ptr> chain;
  std::vector<X509Ptr> roots;  // every root of the bundle (several during rotation)
};

// Loads and checks a CA directory: the key matches the signing certificate,
// which is a CA with keyCertSign whose chain verifies to one of the roots at
// `now`. Only those rules (PROTOCOLS.md §4): cert-manager's CA certificates
// with digitalSignature, a CN and a DNS SAN load. Files are read through
// Kubernetes' `..data` symlinks like any path. The layout is detected by which
// files exist.
Result<CaMaterial> loadCaDirectory(const std::filesystem::path& dir, SystemTime now);

struct NewCa {
  CaMaterial ca;        // the intermediate signs; the root is ca.roots[0]
  EvpPkeyPtr root_key;  // keep offline: it is not part of cacerts
};

// A fresh root ("meshid Root CA", no path length) and an intermediate under it
// ("meshid Intermediate CA", path length 0), both for trust_domain.
Result<NewCa> createCa(const TrustDomain& trust_domain, KeyType key_type, Seconds root_ttl,
                       Seconds intermediate_ttl, SystemTime now);

// Writes the Istio cacerts layout: ca-cert.pem, ca-key.pem (0600),
// cert-chain.pem (chain + roots) and root-cert.pem. Refuses (ALREADY_EXISTS)
// to replace any of them unless overwrite. Creates dir if needed.
Result<void> writeIstioCacerts(const std::filesystem::path& dir, const CaMaterial& ca,
                               bool overwrite);

}  // namespace meshid::pki
