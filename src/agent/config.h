// agent.yaml: everything `meshid agent` is told. Unknown keys are refused, so
// a typo is an error at startup, not a silent default. Istio's agent
// environment variables (SECRET_TTL, SECRET_GRACE_PERIOD_RATIO,
// SECRET_GRACE_PERIOD_RATIO_JITTER) override the file, as they do for
// pilot-agent.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/rotation.h"
#include "common/clock.h"
#include "common/result.h"
#include "pki/key.h"
#include "pki/spiffe_id.h"

namespace meshid::agent {

// Who may receive an identity over the sockets. Every selector given must
// match; an entry with selectors needs at least one.
struct Selectors {
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<std::string> path;  // the caller's executable, /proc/<pid>/exe

  bool empty() const { return !uid && !gid && !path; }
};

// Where an identity is written for software that reads files (nginx,
// databases): spiffe-helper's and certmonger's job.
struct FileSink {
  std::filesystem::path dir;
  std::string cert_file = "cert-chain.pem";  // leaf + intermediates
  std::string key_file = "key.pem";          // PKCS#8, 0600
  std::string bundle_file = "root-cert.pem";
  // Optional: key + chain in one file (0600), as HAProxy and curl --cert read
  // them; one rename replaces both, so a reader never sees a mismatched pair.
  std::string combined_file;
  std::string reload_command;  // run with /bin/sh -c after every write
  std::filesystem::path signal_pid_file;
  int signal = 1;  // SIGHUP
};

struct Entry {
  pki::SpiffeId spiffe_id;
  Selectors selectors;
  std::optional<FileSink> file_sink;
};

// The trust bundle alone, written as one PEM file (Istio's root-cert.pem).
struct BundleSink {
  std::filesystem::path path;
  std::string reload_command;
};

struct AgentConfig {
  explicit AgentConfig(pki::TrustDomain td) : trust_domain(std::move(td)) {}

  pki::TrustDomain trust_domain;

  struct Ca {
    std::vector<std::string> addresses;  // HOST:PORT, tried in order with failover
    std::filesystem::path root_file;     // bootstrap bundle, or:
    std::string pinned_sha256;           // SHA-256 of one root's DER (hex, ':' allowed)
    std::string server_name;             // expected name in the CA's certificate
    Seconds timeout{10};
  } ca;

  struct Credentials {
    std::filesystem::path jwt_token_file;   // re-read at every use
    std::filesystem::path join_token_file;  // bootstraps the agent's own SVID
    std::string agent_id;                   // the SPIFFE ID the join token was made for
  } credentials;

  std::filesystem::path state_dir;  // the agent's own SVID survives restarts here

  std::filesystem::path sds_socket;
  std::filesystem::path workload_api_socket;
  std::filesystem::path admin_socket;  // 0600
  std::string admin_listen = "127.0.0.1:15020";

  Seconds ttl{24 * 3600};        // requested lifetime of workload certificates (SECRET_TTL)
  Seconds agent_ttl{24 * 3600};  // of the agent's own SVID (join-token mode): it must outlive
                                 // CA outages, or renewing everything needs a new join token
  pki::KeyType key_type = pki::KeyType::kEcP256;
  RotationPolicy rotation;
  size_t workers = 4;  // CA requests in flight at once

  std::vector<Entry> entries;
  std::vector<BundleSink> bundle_sinks;
};

using Environment = std::map<std::string, std::string>;

// Relative paths are resolved against base_dir (the file's folder).
Result<AgentConfig> parseAgentConfig(std::string_view yaml, const std::filesystem::path& base_dir,
                                     const Environment& env);
Result<AgentConfig> loadAgentConfig(const std::filesystem::path& path, const Environment& env);

// The process environment, for the variables above only.
Environment processEnvironment();

// Go's time.Duration text as Istio's variables carry it: "24h", "1h30m0s",
// "90s", "500ms". Positive only.
Result<std::chrono::milliseconds> parseGoDuration(std::string_view text);

}  // namespace meshid::agent
