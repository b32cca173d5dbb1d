#include "agent/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <set>

#include "common/duration.h"
#include "common/file_util.h"
#include "common/yaml_keys.h"

namespace meshid::agent {
namespace {

namespace fs = std::filesystem;

Result<std::chrono::milliseconds> durationAt(const YAML::Node& node, std::string_view name) {
  auto d = parseGoDuration(node.as<std::string>());
  if (!d.ok())
    return d.error().wrap(name);
  return *d;
}

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : base / path;
}

Result<int> parseSignal(const std::string& name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", SIGHUP}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT}};
  std::string n = name.starts_with("SIG") ? name.substr(3) : name;
  for (const auto& [s, v] : kSignals) {
    if (n == s)
      return v;
  }
  return Error::invalidArgument(
      fmt::format("signal \"{}\" is not one of HUP, USR1, USR2, TERM, INT", name));
}

Result<Selectors> parseSelectors(const YAML::Node& s) {
  MESHID_RETURN_IF_ERROR(onlyKeys(s, "entry selectors", {"uid", "gid", "path"}));
  Selectors out;
  if (s["uid"])
    out.uid = s["uid"].as<uint32_t>();
  if (s["gid"])
    out.gid = s["gid"].as<uint32_t>();
  if (s["path"]) {
    out.path = s["path"].as<std::string>();
    if (!fs::path(*out.path).is_absolute())
      return Error::invalidArgument("selectors.path must be an absolute path");
  }
  return out;
}

Result<FileSink> parseFileSink(const YAML::Node& s, const fs::path& base) {
  MESHID_RETURN_IF_ERROR(onlyKeys(s, "file_sink",
                                  {"dir", "cert_file", "key_file", "bundle_file", "combined_file",
                                   "reload_command", "signal_pid_file", "signal"}));
  if (!s["dir"])
    return Error::invalidArgument("file_sink.dir is required");
  FileSink sink;
  sink.dir = resolve(base, s["dir"].as<std::string>());
  auto plainName = [](const YAML::Node& n, std::string& out, std::string_view what) {
    out = n.as<std::string>();
    if (out.empty() || out.find('/') != std::string::npos || out == "." || out == "..") {
      return Result<void>(
          Error::invalidArgument(fmt::format("file_sink.{} must be a plain file name", what)));
    }
    return okResult();
  };
  if (s["cert_file"])
    MESHID_RETURN_IF_ERROR(plainName(s["cert_file"], sink.cert_file, "cert_file"));
  if (s["key_file"])
    MESHID_RETURN_IF_ERROR(plainName(s["key_file"], sink.key_file, "key_file"));
  if (s["bundle_file"])
    MESHID_RETURN_IF_ERROR(plainName(s["bundle_file"], sink.bundle_file, "bundle_file"));
  if (s["combined_file"])
    MESHID_RETURN_IF_ERROR(plainName(s["combined_file"], sink.combined_file, "combined_file"));
  std::set<std::string> names{sink.cert_file, sink.key_file, sink.bundle_file};
  if (!sink.combined_file.empty())
    names.insert(sink.combined_file);
  if (names.size() != (sink.combined_file.empty() ? 3u : 4u)) {
    return Error::invalidArgument(
        "file_sink: cert_file, key_file, bundle_file and combined_file must differ");
  }
  if (s["reload_command"])
    sink.reload_command = s["reload_command"].as<std::string>();
  if (s["signal_pid_file"])
    sink.signal_pid_file = resolve(base, s["signal_pid_file"].as<std::string>());
  if (s["signal"]) {
    MESHID_ASSIGN_OR_RETURN(sink.signal, parseSignal(s["signal"].as<std::string>()));
  }
  return sink;
}

Result<void> applyEnvironment(AgentConfig& c, const Environment& env) {
  if (auto it = env.find("SECRET_TTL"); it != env.end() && !it->second.empty()) {
    auto d = parseGoDuration(it->second);
    if (!d.ok())
      return d.error().wrap("SECRET_TTL");
    c.ttl = std::chrono::duration_cast<Seconds>(*d);
  }
  auto ratio = [&](const char* name, double& out) -> Result<void> {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty())
      return okResult();
    char* end = nullptr;
    double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str() || *end != '\0') {
      return Error::invalidArgument(fmt::format("{}=\"{}\" is not a number", name, it->second));
    }
    out = v;
    return okResult();
  };
  MESHID_RETURN_IF_ERROR(ratio("SECRET_GRACE_PERIOD_RATIO", c.rotation.grace_ratio));
  MESHID_RETURN_IF_ERROR(ratio("SECRET_GRACE_PERIOD_RATIO_JITTER", c.rotation.grace_ratio_jitter));
  return okResult();
}

Result<AgentConfig> parse(const YAML::Node& root, const fs::path& base, const Environment& env) {
  MESHID_RETURN_IF_ERROR(onlyKeys(root, "agent config",
                                  {"trust_domain", "ca", "credentials", "state_dir", "sockets",
                                   "admin_listen", "rotation", "entries", "bundle_sinks"}));
  if (!root["trust_domain"])
    return Error::invalidArgument("agent config: trust_domain is required");
  MESHID_ASSIGN_OR_RETURN(pki::TrustDomain td,
                          pki::TrustDomain::parse(root["trust_domain"].as<std::string>()));
  AgentConfig c(td);

  const auto ca = root["ca"];
  if (!ca)
    return Error::invalidArgument("agent config: ca is required");
  MESHID_RETURN_IF_ERROR(
      onlyKeys(ca, "ca", {"addresses", "root_file", "pinned_sha256", "server_name", "timeout"}));
  if (ca["addresses"])
    c.ca.addresses = ca["addresses"].as<std::vector<std::string>>();
  if (c.ca.addresses.empty())
    return Error::invalidArgument("ca.addresses needs at least one HOST:PORT");
  if (ca["root_file"])
    c.ca.root_file = resolve(base, ca["root_file"].as<std::string>());
  if (ca["pinned_sha256"]) {
    std::string pin;
    for (char ch : ca["pinned_sha256"].as<std::string>()) {
      if (ch == ':')
        continue;
      if (!std::isxdigit(static_cast<unsigned char>(ch)))
        return Error::invalidArgument("ca.pinned_sha256 must be hex");
      pin += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    if (pin.size() != 64)
      return Error::invalidArgument("ca.pinned_sha256 must be 32 bytes (64 hex digits)");
    c.ca.pinned_sha256 = pin;
  }
  if (c.ca.root_file.empty() == c.ca.pinned_sha256.empty()) {
    return Error::invalidArgument(
        "ca needs exactly one of root_file (the mesh root) and pinned_sha256 (its fingerprint)");
  }
  if (ca["server_name"])
    c.ca.server_name = ca["server_name"].as<std::string>();
  if (ca["timeout"]) {
    MESHID_ASSIGN_OR_RETURN(auto t, durationAt(ca["timeout"], "ca.timeout"));
    c.ca.timeout = std::max(Seconds(1), std::chrono::duration_cast<Seconds>(t));
  }

  if (const auto cr = root["credentials"]) {
    MESHID_RETURN_IF_ERROR(
        onlyKeys(cr, "credentials", {"jwt_token_file", "join_token_file", "agent_id"}));
    if (cr["jwt_token_file"])
      c.credentials.jwt_token_file = resolve(base, cr["jwt_token_file"].as<std::string>());
    if (cr["join_token_file"])
      c.credentials.join_token_file = resolve(base, cr["join_token_file"].as<std::string>());
    if (cr["agent_id"])
      c.credentials.agent_id = cr["agent_id"].as<std::string>();
  }
  const auto& cred = c.credentials;
  if (cred.jwt_token_file.empty() == cred.join_token_file.empty()) {
    return Error::invalidArgument(
        "credentials needs exactly one of jwt_token_file and join_token_file");
  }
  if (!cred.join_token_file.empty()) {
    if (cred.agent_id.empty())
      return Error::invalidArgument("credentials.agent_id is required with join_token_file");
    MESHID_ASSIGN_OR_RETURN(pki::SpiffeId agent, pki::SpiffeId::parse(cred.agent_id));
    if (!(agent.trustDomain() == td))
      return Error::invalidArgument("credentials.agent_id must be in the trust domain");
    if (!root["state_dir"])
      return Error::invalidArgument("state_dir is required with join_token_file");
  }
  if (root["state_dir"])
    c.state_dir = resolve(base, root["state_dir"].as<std::string>());

  if (const auto s = root["sockets"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(s, "sockets", {"sds", "workload_api", "admin"}));
    if (s["sds"])
      c.sds_socket = resolve(base, s["sds"].as<std::string>());
    if (s["workload_api"])
      c.workload_api_socket = resolve(base, s["workload_api"].as<std::string>());
    if (s["admin"])
      c.admin_socket = resolve(base, s["admin"].as<std::string>());
  }
  for (const auto* p : {&c.sds_socket, &c.workload_api_socket, &c.admin_socket}) {
    // sockaddr_un.sun_path holds 108 bytes with the NUL.
    if (p->string().size() > 100)
      return Error::invalidArgument(fmt::format("socket path {} is too long", p->string()));
  }
  if (root["admin_listen"])
    c.admin_listen = root["admin_listen"].as<std::string>();

  if (const auto r = root["rotation"]) {
    MESHID_RETURN_IF_ERROR(
        onlyKeys(r, "rotation",
                 {"ttl", "agent_ttl", "key_type", "grace_ratio", "grace_ratio_jitter",
                  "initial_backoff", "max_backoff", "workers"}));
    if (r["ttl"]) {
      MESHID_ASSIGN_OR_RETURN(auto t, durationAt(r["ttl"], "rotation.ttl"));
      c.ttl = std::chrono::duration_cast<Seconds>(t);
    }
    if (r["agent_ttl"]) {
      MESHID_ASSIGN_OR_RETURN(auto t, durationAt(r["agent_ttl"], "rotation.agent_ttl"));
      c.agent_ttl = std::chrono::duration_cast<Seconds>(t);
    }
    if (r["key_type"]) {
      MESHID_ASSIGN_OR_RETURN(c.key_type, pki::parseKeyType(r["key_type"].as<std::string>()));
    }
    if (r["grace_ratio"])
      c.rotation.grace_ratio = r["grace_ratio"].as<double>();
    if (r["grace_ratio_jitter"])
      c.rotation.grace_ratio_jitter = r["grace_ratio_jitter"].as<double>();
    if (r["initial_backoff"]) {
      MESHID_ASSIGN_OR_RETURN(c.rotation.initial_backoff,
                              durationAt(r["initial_backoff"], "rotation.initial_backoff"));
    }
    if (r["max_backoff"]) {
      MESHID_ASSIGN_OR_RETURN(c.rotation.max_backoff,
                              durationAt(r["max_backoff"], "rotation.max_backoff"));
    }
    if (r["workers"])
      c.workers = r["workers"].as<size_t>();
  }
  MESHID_RETURN_IF_ERROR(applyEnvironment(c, env));
  if (auto v = validate(c.rotation); !v.ok())
    return v.error().wrap("rotation");
  if (c.ttl < Seconds(2) || c.agent_ttl < Seconds(2))
    return Error::invalidArgument("rotation.ttl and rotation.agent_ttl must be at least 2s");
  if (c.key_type == pki::KeyType::kEd25519) {
    return Error::invalidArgument(
        "rotation.key_type ed25519: Envoy loads only RSA and ECDSA keys; use ec-p256");
  }
  if (c.workers == 0 || c.workers > 64)
    return Error::invalidArgument("rotation.workers must be 1..64");

  if (const auto es = root["entries"]) {
    if (!es.IsSequence())
      return Error::invalidArgument("entries must be a list");
    std::set<std::string> seen;
    for (const auto& e : es) {
      MESHID_RETURN_IF_ERROR(onlyKeys(e, "entry", {"spiffe_id", "selectors", "file_sink"}));
      if (!e["spiffe_id"])
        return Error::invalidArgument("entry: spiffe_id is required");
      auto id = pki::SpiffeId::parse(e["spiffe_id"].as<std::string>());
      if (!id.ok())
        return id.error().wrap("entry.spiffe_id");
      if (!(id->trustDomain() == td)) {
        return Error::invalidArgument(
            fmt::format("entry {} is outside the trust domain {}", id->str(), td.name()));
      }
      if (!seen.insert(id->str()).second)
        return Error::invalidArgument(fmt::format("entry {} is listed twice", id->str()));
      Entry entry{*id, {}, std::nullopt};
      if (e["selectors"]) {
        MESHID_ASSIGN_OR_RETURN(entry.selectors, parseSelectors(e["selectors"]));
        if (entry.selectors.empty())
          return Error::invalidArgument(fmt::format("entry {}: selectors is empty", id->str()));
      }
      if (e["file_sink"]) {
        MESHID_ASSIGN_OR_RETURN(entry.file_sink, parseFileSink(e["file_sink"], base));
      }
      if (entry.selectors.empty() && !entry.file_sink) {
        return Error::invalidArgument(fmt::format(
            "entry {} needs selectors (served over the sockets) or a file_sink", id->str()));
      }
      c.entries.push_back(std::move(entry));
    }
  }
  if (const auto bs = root["bundle_sinks"]) {
    if (!bs.IsSequence())
      return Error::invalidArgument("bundle_sinks must be a list");
    for (const auto& b : bs) {
      MESHID_RETURN_IF_ERROR(onlyKeys(b, "bundle sink", {"path", "reload_command"}));
      if (!b["path"])
        return Error::invalidArgument("bundle sink: path is required");
      BundleSink sink{resolve(base, b["path"].as<std::string>()), {}};
      if (b["reload_command"])
        sink.reload_command = b["reload_command"].as<std::string>();
      c.bundle_sinks.push_back(std::move(sink));
    }
  }
  bool any_selectors = std::any_of(c.entries.begin(), c.entries.end(),
                                   [](const Entry& e) { return !e.selectors.empty(); });
  if (any_selectors && c.sds_socket.empty() && c.workload_api_socket.empty()) {
    return Error::invalidArgument(
        "entries with selectors need sockets.sds or sockets.workload_api to be served on");
  }
  return c;
}

}  // namespace

Result<std::chrono::milliseconds> parseGoDuration(std::string_view text) {
  if (text.empty())
    return Error::invalidArgument("duration is empty");
  if (text.size() > 64)
    return Error::invalidArgument("duration is too long");
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (i == start) {
      return Error::invalidArgument(
          fmt::format("duration \"{}\": expected a number, e.g. 24h, 90s, 1h30m, 500ms", text));
    }
    std::string number(text.substr(start, i - start));
    char* end = nullptr;
    double value = std::strtod(number.c_str(), &end);
    if (*end != '\0')
      return Error::invalidArgument(fmt::format("duration \"{}\": bad number", text));
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])))
      ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else if (unit == "d")
      scale = 86'400'000;
    else
      return Error::invalidArgument(
          fmt::format("duration \"{}\": unit must be ms, s, m, h or d", text));
    total_ms += value * scale;
  }
  if (!(total_ms >= 1) || total_ms > 1e13)
    return Error::invalidArgument(fmt::format("duration \"{}\" is out of range", text));
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

Result<AgentConfig> parseAgentConfig(std::string_view yaml, const fs::path& base_dir,
                                     const Environment& env) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull())
      return Error::invalidArgument("agent config is empty");
    return parse(root, base_dir, env);
  } catch (const YAML::Exception& e) {
    return Error::invalidArgument(fmt::format("agent config: {}", e.what()));
  }
}

Result<AgentConfig> loadAgentConfig(const fs::path& path, const Environment& env) {
  MESHID_ASSIGN_OR_RETURN(std::string text, readFile(path, 1 << 20));
  auto c = parseAgentConfig(text, path.has_parent_path() ? path.parent_path() : fs::path("."), env);
  if (!c.ok())
    return c.error().wrap(path.string());
  return c;
}

Environment processEnvironment() {
  Environment env;
  for (const char* name :
       {"SECRET_TTL", "SECRET_GRACE_PERIOD_RATIO", "SECRET_GRACE_PERIOD_RATIO_JITTER"}) {
    if (const char* v = std::getenv(name))
      env[name] = v;
  }
  return env;
}

}  // namespace meshid::agent
