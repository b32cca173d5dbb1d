// ca.yaml: everything `meshid ca serve` is told. Unknown keys are refused, so a
// typo is an error at startup, not a silent default.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ca/policy.h"
#include "common/result.h"
#include "pki/key.h"
#include "pki/spiffe_id.h"

namespace meshid::ca {

struct CaConfig {
  explicit CaConfig(pki::TrustDomain td) : trust_domain(std::move(td)) {}

  pki::TrustDomain trust_domain;
  std::string listen = "127.0.0.1:15012";        // gRPC over TLS
  std::string admin_listen = "127.0.0.1:15014";  // HTTP: /metrics /healthz /readyz /debug/ca
  std::filesystem::path state_dir;               // keys, database, serving files

  struct Serving {
    std::string spiffe_id;  // default spiffe://<td>/meshid/ca
    std::vector<std::string> dns_names{"localhost"};
    std::vector<std::string> ip_addresses{"127.0.0.1"};
    Seconds lifetime{24 * 3600};
  } serving;

  struct Signer {
    std::string type = "selfsigned";  // selfsigned | files
    std::filesystem::path dir;        // files: the cacerts or cert-manager directory
    pki::KeyType key_type = pki::KeyType::kEcP256;
    Seconds root_ttl{3650LL * 24 * 3600};
    Seconds intermediate_ttl{365LL * 24 * 3600};
    std::chrono::milliseconds poll_interval{2000};
  } signer;

  PolicyConfig policy;
  size_t max_concurrent_signings = 64;
  size_t max_message_bytes = 64 * 1024;
  // Threads of their own that sign batches; 0 = none: the gRPC event loops
  // sign what they read (no hand-off between threads).
  size_t signing_workers = 0;
  size_t transport_threads = 0;  // gRPC event loops; 0 = one per core
  // Freed blocks of each size glibc keeps per thread (GLIBC_TUNABLES
  // glibc.malloc.tcache_count; cli/thread_cache.h); 0 = glibc's default, 7.
  size_t malloc_thread_cache = 64;

  struct Kubernetes {
    bool enabled = false;
    std::filesystem::path jwks_file;
    std::string jwks_url;
    std::filesystem::path jwks_ca_file;  // CA for jwks_url's TLS (default: system roots)
    std::string issuer;                  // required "iss"; empty: not checked
    std::vector<std::string> audiences{"istio-ca"};
    Seconds refresh{300};
  } kubernetes;

  bool mtls = true;
  bool join_tokens = true;

  // Retention: issuance records and join tokens are deleted once they have
  // been expired this long (zero: kept forever), looked for every
  // prune_interval.
  struct Records {
    Seconds retention{90LL * 24 * 3600};
    Seconds prune_interval{3600};
  } records;

  std::filesystem::path databasePath() const { return state_dir / "meshid-ca.db"; }
};

// Relative paths in the file are resolved against base_dir (the file's folder).
Result<CaConfig> parseCaConfig(std::string_view yaml, const std::filesystem::path& base_dir);
Result<CaConfig> loadCaConfig(const std::filesystem::path& path);

}  // namespace meshid::ca
