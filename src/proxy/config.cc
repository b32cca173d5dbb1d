#include "proxy/config.h"

#include <charconv>

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

// parseDuration's cap, for "ms" too: the proxy adds these to now() and
// converts them to nanoseconds (asio timers), which must not overflow.
constexpr std::chrono::milliseconds kMaxMillis = std::chrono::hours(24 * 365 * 100);
// A bound on memory, not a tuning value: a kept session from a full
// handshake holds the client's decoded certificates, ≈ 11.5 kB (measured
// with a leaf + intermediate chain), so this is about 1.2 GB.
constexpr size_t kMaxSessionCache = 100'000;
// Per worker, at ≈ 84 kB each: about 1.7 GB at most.
constexpr size_t kMaxKeptBuffers = 20'000;

// "auto", 0 for off, or microseconds only ("50us"): a spin longer than a
// millisecond would be a worker that never sleeps under any traffic.
Result<void> busyPoll(const YAML::Node& n, ProxyConfig& c) {
  const std::string text = n.as<std::string>();
  c.busy_poll_adaptive = text == "auto";
  if (text == "auto" || text == "0") {
    c.busy_poll = text == "auto" ? kAutoBusyPoll : std::chrono::microseconds(0);
    return okResult();
  }
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (!text.ends_with("us") || end != text.c_str() + text.size() - 2 || v <= 0 || v > 1000)
    return Error::invalidArgument(fmt::format(
        "busy_poll: \"{}\" is not auto (the default), 0 (off) or 1us to 1000us, e.g. 50us", text));
  c.busy_poll = std::chrono::microseconds(v);
  return okResult();
}

Result<std::chrono::milliseconds> millis(const YAML::Node& n, std::string_view what) {
  std::string text = n.as<std::string>();
  if (text.ends_with("ms")) {
    char* end = nullptr;
    long v = std::strtol(text.c_str(), &end, 10);  // saturates past LONG_MAX
    if (end != text.c_str() + text.size() - 2 || v <= 0)
      return Error::invalidArgument(fmt::format("{}: bad duration \"{}\"", what, text));
    if (v > kMaxMillis.count())
      return Error::outOfRange(
          fmt::format("{}: duration \"{}\" is longer than 100 years", what, text));
    return std::chrono::milliseconds(v);
  }
  auto d = parseDuration(text);
  if (!d.ok())
    return d.error().wrap(what);
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

// A whole number from 0 to max, named in the error (yaml-cpp's own
// conversion says only "bad conversion", and takes "-1" for a size_t on
// some versions).
Result<size_t> count(const YAML::Node& n, std::string_view what, size_t max) {
  const std::string text = n.IsScalar() ? n.Scalar() : std::string();
  size_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v > max) {
    return Error::invalidArgument(
        fmt::format("{} must be a whole number from 0 to {}, not \"{}\"", what, max, text));
  }
  return v;
}

Result<void> checkAddress(const std::string& a, std::string_view what) {
  auto hp = splitHostPort(a);
  if (!hp.ok())
    return hp.error().wrap(what);
  return okResult();
}

// ALPN protocol names go on the wire as a length byte and the name.
Result<std::vector<std::string>> alpnList(const YAML::Node& n, std::string_view what) {
  auto list = n.as<std::vector<std::string>>();
  for (const auto& p : list) {
    if (p.empty() || p.size() > 255)
      return Error::invalidArgument(fmt::format("{}: ALPN names are 1 to 255 bytes", what));
  }
  return list;
}

Result<ProxyConfig> parse(const YAML::Node& root, const fs::path& base) {
  MESHID_RETURN_IF_ERROR(
      onlyKeys(root, "proxy config",
               {"trust_domain", "certificates", "inbound", "outbound", "admin_listen", "workers",
                "busy_poll", "timeouts", "limits", "tls"}));
  if (!root["trust_domain"])
    return Error::invalidArgument("proxy config: trust_domain is required");
  MESHID_ASSIGN_OR_RETURN(pki::TrustDomain td,
                          pki::TrustDomain::parse(root["trust_domain"].as<std::string>()));
  ProxyConfig c(td);
  const auto certs = root["certificates"];
  if (!certs)
    return Error::invalidArgument("proxy config: certificates is required");
  MESHID_RETURN_IF_ERROR(onlyKeys(
      certs, "certificates", {"cert_file", "key_file", "bundle_file", "poll_interval", "sds"}));
  if (const auto sds = certs["sds"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(
        sds, "certificates.sds", {"socket", "certificate", "validation", "initial_fetch_timeout"}));
    if (certs["cert_file"] || certs["key_file"] || certs["bundle_file"])
      return Error::invalidArgument("certificates: give either files or sds, not both");
    if (!sds["socket"])
      return Error::invalidArgument("certificates.sds needs socket (the agent's SDS socket)");
    c.sds.socket = resolve(base, sds["socket"].as<std::string>());
    if (sds["certificate"])
      c.sds.certificate = sds["certificate"].as<std::string>();
    if (sds["validation"])
      c.sds.validation = sds["validation"].as<std::string>();
    if (c.sds.certificate.empty() || c.sds.validation.empty() ||
        c.sds.certificate == c.sds.validation)
      return Error::invalidArgument(
          "certificates.sds: certificate and validation must be two different resource names");
    if (sds["initial_fetch_timeout"]) {
      MESHID_ASSIGN_OR_RETURN(
          c.sds.initial_fetch_timeout,
          millis(sds["initial_fetch_timeout"], "certificates.sds.initial_fetch_timeout"));
    }
  } else {
    if (!certs["cert_file"] || !certs["key_file"] || !certs["bundle_file"])
      return Error::invalidArgument(
          "certificates needs cert_file, key_file and bundle_file (or sds)");
    c.certificates.cert_file = resolve(base, certs["cert_file"].as<std::string>());
    c.certificates.key_file = resolve(base, certs["key_file"].as<std::string>());
    c.certificates.bundle_file = resolve(base, certs["bundle_file"].as<std::string>());
  }
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
          onlyKeys(l, "inbound listener", {"name", "listen", "forward", "mode", "allow", "alpn"}));
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
      if (l["alpn"]) {
        MESHID_ASSIGN_OR_RETURN(li.alpn, alpnList(l["alpn"], "inbound alpn"));
      }
      if (!names.insert(li.name).second)
        return Error::invalidArgument(fmt::format("listener name \"{}\" is used twice", li.name));
      c.inbound.push_back(std::move(li));
    }
  }
  if (const auto out = root["outbound"]) {
    if (!out.IsSequence())
      return Error::invalidArgument("outbound must be a list");
    for (const auto& l : out) {
      MESHID_RETURN_IF_ERROR(onlyKeys(l, "outbound listener",
                                      {"name", "listen", "destination", "expected_ids", "ca_file",
                                       "sni", "alpn", "resumption"}));
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
      if (l["alpn"]) {
        MESHID_ASSIGN_OR_RETURN(lo.alpn, alpnList(l["alpn"], "outbound alpn"));
      }
      if (l["resumption"])
        lo.resumption = l["resumption"].as<bool>();
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
  if (root["busy_poll"]) {
    MESHID_RETURN_IF_ERROR(busyPoll(root["busy_poll"], c));
  }
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
    MESHID_RETURN_IF_ERROR(onlyKeys(
        t, "tls",
        {"ciphers", "ticket_key_rotation", "session_cache_size", "kept_buffers", "record_layer"}));
    if (t["ciphers"])
      c.ciphers = t["ciphers"].as<std::string>();
    if (t["ticket_key_rotation"]) {
      MESHID_ASSIGN_OR_RETURN(c.ticket_key_rotation,
                              millis(t["ticket_key_rotation"], "tls.ticket_key_rotation"));
    }
    if (t["session_cache_size"]) {
      MESHID_ASSIGN_OR_RETURN(
          c.session_cache_size,
          count(t["session_cache_size"], "tls.session_cache_size", kMaxSessionCache));
    }
    if (t["kept_buffers"]) {
      MESHID_ASSIGN_OR_RETURN(c.kept_buffers,
                              count(t["kept_buffers"], "tls.kept_buffers", kMaxKeptBuffers));
    }
    if (t["record_layer"]) {
      const std::string layer = t["record_layer"].as<std::string>();
      if (layer != "meshid" && layer != "openssl") {
        return Error::invalidArgument(
            fmt::format("tls.record_layer: \"{}\" is not meshid (the default) or openssl", layer));
      }
      c.own_record_layer = layer == "meshid";
    }
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

Result<Mode> parseMode(const std::string& m) {
  if (m == "STRICT")
    return Mode::kStrict;
  if (m == "PERMISSIVE")
    return Mode::kPermissive;
  if (m == "DISABLE")
    return Mode::kDisable;
  return Error::invalidArgument(fmt::format("mode \"{}\" is not STRICT, PERMISSIVE or DISABLE", m));
}

Result<void> checkReloadable(const ProxyConfig& a, const ProxyConfig& b) {
  auto needsRestart = [](std::string_view what) {
    return Error::failedPrecondition(
        fmt::format("{} changed: that needs a restart (a reload changes modes, allow lists and "
                    "expected IDs only)",
                    what));
  };
  if (!(a.trust_domain == b.trust_domain))
    return needsRestart("trust_domain");
  if (a.certificates.cert_file != b.certificates.cert_file ||
      a.certificates.key_file != b.certificates.key_file ||
      a.certificates.bundle_file != b.certificates.bundle_file ||
      a.certificates.poll_interval != b.certificates.poll_interval ||
      a.sds.socket != b.sds.socket || a.sds.certificate != b.sds.certificate ||
      a.sds.validation != b.sds.validation)
    return needsRestart("certificates");
  if (a.admin_listen != b.admin_listen)
    return needsRestart("admin_listen");
  if (a.workers != b.workers)
    return needsRestart("workers");
  if (a.busy_poll != b.busy_poll || a.busy_poll_adaptive != b.busy_poll_adaptive)
    return needsRestart("busy_poll");
  if (a.handshake_timeout != b.handshake_timeout || a.idle_timeout != b.idle_timeout)
    return needsRestart("timeouts");
  if (a.max_connections != b.max_connections)
    return needsRestart("limits");
  if (a.ciphers != b.ciphers || a.ticket_key_rotation != b.ticket_key_rotation ||
      a.session_cache_size != b.session_cache_size || a.kept_buffers != b.kept_buffers ||
      a.own_record_layer != b.own_record_layer)
    return needsRestart("tls");
  if (a.inbound.size() != b.inbound.size() || a.outbound.size() != b.outbound.size())
    return needsRestart("the set of listeners");
  for (size_t i = 0; i < a.inbound.size(); ++i) {
    const auto &x = a.inbound[i], &y = b.inbound[i];
    if (x.name != y.name || x.listen != y.listen || x.forward != y.forward || x.alpn != y.alpn)
      return needsRestart(fmt::format("inbound listener {}", x.name));
  }
  for (size_t i = 0; i < a.outbound.size(); ++i) {
    const auto &x = a.outbound[i], &y = b.outbound[i];
    if (x.name != y.name || x.listen != y.listen || x.destination != y.destination ||
        x.ca_file != y.ca_file || x.sni != y.sni || x.alpn != y.alpn ||
        x.resumption != y.resumption)
      return needsRestart(fmt::format("outbound listener {}", x.name));
  }
  return okResult();
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
