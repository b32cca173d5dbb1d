#include "proxy/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "common/admin_http.h"
#include "common/duration.h"
#include "common/file_util.h"
#include "common/yaml_keys.h"

namespace meshid::proxy {
namespace {

namespace fs = std::filesystem;

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : base / path;
}

Result<std::chrono::milliseconds> millis(const YAML::Node& n, std::string_view what) {
  std::string text = n.as<std::string>();
  if (text.ends_with("ms")) {
    char* end = nullptr;
    long v = std::strtol(text.c_str(), &end, 10);
    if (end != text.c_str() + text.size() - 2 || v <= 0)
      return Error::invalidArgument(fmt::format("{}: bad duration \"{}\"", what, text));
    return std::chrono::milliseconds(v);
  }
  auto d = parseDuration(text);
  if (!d.ok())
    return d.error().wrap(what);
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

Result<void> checkAddress(const std::string& a, std::string_view what) {
  auto hp = splitHostPort(a);
  if (!hp.ok())
    return hp.error().wrap(what);
  return okResult();
}

Result<Mode> parseMode(const std::string& m) {
  if (m == "STRICT")
    return Mode::kStrict;
  if (m == "PERMISSIVE")
    return Mode::kPermissive;
  if (m == "DISABLE")
    return Mode::kDisable;
  return Error::invalidArgument(fmt::format("mode \"{}\" is not STRICT, PERMISSIVE or DISABLE", m));
}

Result<ProxyConfig> parse(const YAML::Node& root, const fs::path& base) {
  MESHID_RETURN_IF_ERROR(onlyKeys(root, "proxy config",
                                  {"trust_domain", "certificates", "inbound", "outbound",
                                   "admin_listen", "workers", "timeouts", "limits", "tls"}));
  if (!root["trust_domain"])
    return Error::invalidArgument("proxy config: trust_domain is required");
  MESHID_ASSIGN_OR_RETURN(pki::TrustDomain td,
                          pki::TrustDomain::parse(root["trust_domain"].as<std::string>()));
  ProxyConfig c(td);
  const auto certs = root["certificates"];
  if (!certs)
    return Error::invalidArgument("proxy config: certificates is required");
  MESHID_RETURN_IF_ERROR(
      onlyKeys(certs, "certificates", {"cert_file", "key_file", "bundle_file", "poll_interval"}));
  if (!certs["cert_file"] || !certs["key_file"] || !certs["bundle_file"])
    return Error::invalidArgument("certificates needs cert_file, key_file and bundle_file");
  c.certificates.cert_file = resolve(base, certs["cert_file"].as<std::string>());
  c.certificates.key_file = resolve(base, certs["key_file"].as<std::string>());
  c.certificates.bundle_file = resolve(base, certs["bundle_file"].as<std::string>());
  if (certs["poll_interval"]) {
    MESHID_ASSIGN_OR_RETURN(c.certificates.poll_interval,
                            millis(certs["poll_interval"], "certificates.poll_interval"));
  }

  std::set<std::string> names;
  if (const auto in = root["inbound"]) {
    if (!in.IsSequence())
      return Error::invalidArgument("inbound must be a list");
    for (const auto& l : in) {
      MESHID_RETURN_IF_ERROR(
          onlyKeys(l, "inbound listener", {"name", "listen", "forward", "mode", "allow"}));
      InboundListener li;
      if (!l["name"] || !l["listen"] || !l["forward"])
        return Error::invalidArgument("inbound listener needs name, listen and forward");
      li.name = l["name"].as<std::string>();
      li.listen = l["listen"].as<std::string>();
      li.forward = l["forward"].as<std::string>();
      MESHID_RETURN_IF_ERROR(checkAddress(li.listen, "inbound listen"));
      MESHID_RETURN_IF_ERROR(checkAddress(li.forward, "inbound forward"));
      if (l["mode"]) {
        MESHID_ASSIGN_OR_RETURN(li.mode, parseMode(l["mode"].as<std::string>()));
      }
      if (l["allow"])
        li.allow = l["allow"].as<std::vector<std::string>>();
      MESHID_ASSIGN_OR_RETURN(li.allow_list, AllowList::parse(li.allow));
      if (!names.insert(li.name).second)
        return Error::invalidArgument(fmt::format("listener name \"{}\" is used twice", li.name));
      c.inbound.push_back(std::move(li));
    }
  }
  if (const auto out = root["outbound"]) {
    if (!out.IsSequence())
      return Error::invalidArgument("outbound must be a list");
    for (const auto& l : out) {
      MESHID_RETURN_IF_ERROR(
          onlyKeys(l, "outbound listener",
                   {"name", "listen", "destination", "expected_ids", "ca_file", "sni"}));
      OutboundListener lo;
      if (!l["name"] || !l["listen"] || !l["destination"])
        return Error::invalidArgument("outbound listener needs name, listen and destination");
      lo.name = l["name"].as<std::string>();
      lo.listen = l["listen"].as<std::string>();
      lo.destination = l["destination"].as<std::string>();
      MESHID_RETURN_IF_ERROR(checkAddress(lo.listen, "outbound listen"));
      MESHID_RETURN_IF_ERROR(checkAddress(lo.destination, "outbound destination"));
      if (l["expected_ids"])
        lo.expected_ids = l["expected_ids"].as<std::vector<std::string>>();
      MESHID_ASSIGN_OR_RETURN(lo.expected, AllowList::parse(lo.expected_ids));
      if (l["ca_file"])
        lo.ca_file = resolve(base, l["ca_file"].as<std::string>());
      if (l["sni"])
        lo.sni = l["sni"].as<std::string>();
      if (!names.insert(lo.name).second)
        return Error::invalidArgument(fmt::format("listener name \"{}\" is used twice", lo.name));
      c.outbound.push_back(std::move(lo));
    }
  }
  if (c.inbound.empty() && c.outbound.empty())
    return Error::invalidArgument("proxy config: no inbound or outbound listener");
  if (root["admin_listen"])
    c.admin_listen = root["admin_listen"].as<std::string>();
  if (root["workers"])
    c.workers = root["workers"].as<size_t>();
  if (c.workers > 256)
    return Error::invalidArgument("workers must be 0 (one per core) to 256");
  if (const auto t = root["timeouts"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(t, "timeouts", {"handshake", "idle"}));
    if (t["handshake"]) {
      MESHID_ASSIGN_OR_RETURN(c.handshake_timeout, millis(t["handshake"], "timeouts.handshake"));
    }
    if (t["idle"]) {
      MESHID_ASSIGN_OR_RETURN(c.idle_timeout, millis(t["idle"], "timeouts.idle"));
    }
  }
  if (const auto l = root["limits"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(l, "limits", {"max_connections"}));
    if (l["max_connections"])
      c.max_connections = l["max_connections"].as<size_t>();
    if (c.max_connections == 0)
      return Error::invalidArgument("limits.max_connections must be at least 1");
  }
  if (const auto t = root["tls"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(t, "tls", {"ciphers"}));
    if (t["ciphers"])
      c.ciphers = t["ciphers"].as<std::string>();
  }
  return c;
}

}  // namespace

const char* modeName(Mode mode) {
  switch (mode) {
    case Mode::kStrict:
      return "STRICT";
    case Mode::kPermissive:
      return "PERMISSIVE";
    case Mode::kDisable:
      return "DISABLE";
  }
  return "?";
}

Result<ProxyConfig> parseProxyConfig(std::string_view yaml, const fs::path& base_dir) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull())
      return Error::invalidArgument("proxy config is empty");
    return parse(root, base_dir);
  } catch (const YAML::Exception& e) {
    return Error::invalidArgument(fmt::format("proxy config: {}", e.what()));
  }
}

Result<ProxyConfig> loadProxyConfig(const fs::path& path) {
  MESHID_ASSIGN_OR_RETURN(std::string text, readFile(path, 1 << 20));
  auto c = parseProxyConfig(text, path.has_parent_path() ? path.parent_path() : fs::path("."));
  if (!c.ok())
    return c.error().wrap(path.string());
  return c;
}

}  // namespace meshid::proxy
