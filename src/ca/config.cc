#include "ca/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "common/duration.h"
#include "common/file_util.h"
#include "common/yaml_keys.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;

Result<Seconds> durationAt(const YAML::Node& node, std::string_view name) {
  auto d = parseDuration(node.as<std::string>());
  if (!d.ok())
    return d.error().wrap(name);
  return *d;
}

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : base / path;
}

Result<CaConfig> parse(const YAML::Node& root, const fs::path& base) {
  MESHID_RETURN_IF_ERROR(
      onlyKeys(root, "ca config",
               {"trust_domain", "listen", "admin_listen", "state_dir", "serving", "signer",
                "issuance", "limits", "authentication", "delegation", "store"}));
  if (!root["trust_domain"])
    return Error::invalidArgument("ca config: trust_domain is required");
  if (!root["state_dir"])
    return Error::invalidArgument("ca config: state_dir is required");
  MESHID_ASSIGN_OR_RETURN(pki::TrustDomain td,
                          pki::TrustDomain::parse(root["trust_domain"].as<std::string>()));
  CaConfig c(td);
  if (root["listen"])
    c.listen = root["listen"].as<std::string>();
  if (root["admin_listen"])
    c.admin_listen = root["admin_listen"].as<std::string>();
  c.state_dir = resolve(base, root["state_dir"].as<std::string>());

  if (const auto s = root["serving"]) {
    MESHID_RETURN_IF_ERROR(
        onlyKeys(s, "serving", {"spiffe_id", "dns_names", "ip_addresses", "lifetime"}));
    if (s["spiffe_id"])
      c.serving.spiffe_id = s["spiffe_id"].as<std::string>();
    if (s["dns_names"])
      c.serving.dns_names = s["dns_names"].as<std::vector<std::string>>();
    if (s["ip_addresses"])
      c.serving.ip_addresses = s["ip_addresses"].as<std::vector<std::string>>();
    if (s["lifetime"]) {
      MESHID_ASSIGN_OR_RETURN(c.serving.lifetime, durationAt(s["lifetime"], "serving.lifetime"));
    }
  }
  if (c.serving.spiffe_id.empty())
    c.serving.spiffe_id = "spiffe://" + td.name() + "/meshid/ca";
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId serving_id, pki::SpiffeId::parse(c.serving.spiffe_id));
  if (!(serving_id.trustDomain() == td)) {
    return Error::invalidArgument("serving.spiffe_id must be in the CA's trust domain");
  }

  if (const auto s = root["signer"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(
        s, "signer", {"type", "dir", "key_type", "root_ttl", "intermediate_ttl", "poll_interval"}));
    if (s["type"])
      c.signer.type = s["type"].as<std::string>();
    if (s["dir"])
      c.signer.dir = resolve(base, s["dir"].as<std::string>());
    if (s["key_type"]) {
      MESHID_ASSIGN_OR_RETURN(c.signer.key_type,
                              pki::parseKeyType(s["key_type"].as<std::string>()));
    }
    if (s["root_ttl"]) {
      MESHID_ASSIGN_OR_RETURN(c.signer.root_ttl, durationAt(s["root_ttl"], "signer.root_ttl"));
    }
    if (s["intermediate_ttl"]) {
      MESHID_ASSIGN_OR_RETURN(c.signer.intermediate_ttl,
                              durationAt(s["intermediate_ttl"], "signer.intermediate_ttl"));
    }
    if (s["poll_interval"]) {
      MESHID_ASSIGN_OR_RETURN(Seconds p, durationAt(s["poll_interval"], "signer.poll_interval"));
      c.signer.poll_interval = p;
    }
  }
  if (c.signer.type != "selfsigned" && c.signer.type != "files") {
    return Error::invalidArgument(
        fmt::format("signer.type \"{}\" is not known: use selfsigned or files", c.signer.type));
  }
  if (c.signer.type == "files" && c.signer.dir.empty()) {
    return Error::invalidArgument("signer.dir is required for the files signer");
  }

  if (const auto s = root["issuance"]) {
    MESHID_RETURN_IF_ERROR(
        onlyKeys(s, "issuance", {"default_ttl", "max_ttl", "allowed_key_types"}));
    if (s["default_ttl"]) {
      MESHID_ASSIGN_OR_RETURN(c.policy.default_ttl,
                              durationAt(s["default_ttl"], "issuance.default_ttl"));
    }
    if (s["max_ttl"]) {
      MESHID_ASSIGN_OR_RETURN(c.policy.max_ttl, durationAt(s["max_ttl"], "issuance.max_ttl"));
    }
    if (s["allowed_key_types"]) {
      c.policy.allowed_key_types.clear();
      for (const auto& k : s["allowed_key_types"]) {
        MESHID_ASSIGN_OR_RETURN(pki::KeyType t, pki::parseKeyType(k.as<std::string>()));
        c.policy.allowed_key_types.insert(t);
      }
    }
  }
  if (c.policy.default_ttl > c.policy.max_ttl) {
    return Error::invalidArgument("issuance.default_ttl must not exceed issuance.max_ttl");
  }

  if (const auto d = root["delegation"]) {
    if (!d.IsSequence())
      return Error::invalidArgument("delegation must be a list of {agent, may_request}");
    for (const auto& g : d) {
      MESHID_RETURN_IF_ERROR(onlyKeys(g, "delegation entry", {"agent", "may_request"}));
      if (!g["agent"] || !g["may_request"] || !g["may_request"].IsSequence()) {
        return Error::invalidArgument("delegation entry needs agent and a may_request list");
      }
      auto agent = pki::SpiffeId::parse(g["agent"].as<std::string>());
      if (!agent.ok())
        return agent.error().wrap("delegation.agent");
      if (!(agent->trustDomain() == td))
        return Error::invalidArgument("delegation.agent must be in the CA's trust domain");
      Delegation grant{*agent, {}};
      for (const auto& m : g["may_request"]) {
        std::string entry = m.as<std::string>();
        // A prefix must end in '/' so that ns/web/ never matches ns/webhook.
        std::string checked = entry.ends_with('/') ? entry + "x" : entry;
        auto id = pki::SpiffeId::parse(checked);
        if (!id.ok())
          return id.error().wrap(fmt::format("delegation.may_request \"{}\"", entry));
        if (!(id->trustDomain() == td)) {
          return Error::invalidArgument(
              fmt::format("delegation.may_request \"{}\" is outside the CA's trust domain", entry));
        }
        grant.may_request.push_back(entry);
      }
      c.policy.delegations.push_back(std::move(grant));
    }
  }

  if (const auto s = root["limits"]) {
    MESHID_RETURN_IF_ERROR(
        onlyKeys(s, "limits",
                 {"max_concurrent_signings", "max_message_bytes", "signing_workers",
                  "transport_threads", "malloc_thread_cache"}));
    if (s["malloc_thread_cache"])
      c.malloc_thread_cache = s["malloc_thread_cache"].as<size_t>();
    if (s["signing_workers"])
      c.signing_workers = s["signing_workers"].as<size_t>();
    if (s["transport_threads"])
      c.transport_threads = s["transport_threads"].as<size_t>();
    if (s["max_concurrent_signings"])
      c.max_concurrent_signings = s["max_concurrent_signings"].as<size_t>();
    if (s["max_message_bytes"])
      c.max_message_bytes = s["max_message_bytes"].as<size_t>();
    if (c.max_concurrent_signings == 0 || c.max_message_bytes < 4096 || c.signing_workers > 256 ||
        c.transport_threads > 256 || c.max_message_bytes > (64u << 20) ||
        c.malloc_thread_cache > 65535) {
      return Error::invalidArgument(
          "limits: max_concurrent_signings >= 1, max_message_bytes 4096 to 64 MiB, "
          "signing_workers 0 (sign on the gRPC loops) to 256, transport_threads 0 (one per "
          "core) to 256, malloc_thread_cache 0 (glibc's default) to 65535");
    }
  }

  if (const auto st = root["store"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(st, "store", {"retention", "prune_interval"}));
    if (st["retention"]) {
      if (st["retention"].as<std::string>() == "0") {
        c.records.retention = Seconds(0);
      } else {
        MESHID_ASSIGN_OR_RETURN(c.records.retention,
                                durationAt(st["retention"], "store.retention (or 0: forever)"));
      }
    }
    if (st["prune_interval"]) {
      MESHID_ASSIGN_OR_RETURN(c.records.prune_interval,
                              durationAt(st["prune_interval"], "store.prune_interval"));
    }
  }

  if (const auto a = root["authentication"]) {
    MESHID_RETURN_IF_ERROR(onlyKeys(a, "authentication", {"kubernetes", "mtls", "join_tokens"}));
    if (a["mtls"])
      c.mtls = a["mtls"].as<bool>();
    if (a["join_tokens"])
      c.join_tokens = a["join_tokens"].as<bool>();
    if (const auto k = a["kubernetes"]) {
      MESHID_RETURN_IF_ERROR(
          onlyKeys(k, "authentication.kubernetes",
                   {"jwks_file", "jwks_url", "jwks_ca_file", "issuer", "audiences", "refresh"}));
      c.kubernetes.enabled = true;
      if (k["jwks_file"])
        c.kubernetes.jwks_file = resolve(base, k["jwks_file"].as<std::string>());
      if (k["jwks_url"])
        c.kubernetes.jwks_url = k["jwks_url"].as<std::string>();
      if (k["jwks_ca_file"])
        c.kubernetes.jwks_ca_file = resolve(base, k["jwks_ca_file"].as<std::string>());
      if (k["issuer"])
        c.kubernetes.issuer = k["issuer"].as<std::string>();
      if (k["audiences"])
        c.kubernetes.audiences = k["audiences"].as<std::vector<std::string>>();
      if (k["refresh"]) {
        MESHID_ASSIGN_OR_RETURN(c.kubernetes.refresh,
                                durationAt(k["refresh"], "authentication.kubernetes.refresh"));
      }
      if (c.kubernetes.jwks_file.empty() == c.kubernetes.jwks_url.empty()) {
        return Error::invalidArgument(
            "authentication.kubernetes needs exactly one of jwks_file and jwks_url");
      }
      if (!c.kubernetes.jwks_url.empty() && !c.kubernetes.jwks_url.starts_with("https://")) {
        return Error::invalidArgument("authentication.kubernetes.jwks_url must be https://");
      }
    }
  }
  return c;
}

}  // namespace

Result<CaConfig> parseCaConfig(std::string_view yaml, const fs::path& base_dir) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull()) {
      return Error::invalidArgument("ca config is empty");
    }
    return parse(root, base_dir);
  } catch (const YAML::Exception& e) {
    return Error::invalidArgument(fmt::format("ca config: {}", e.what()));
  }
}

Result<CaConfig> loadCaConfig(const fs::path& path) {
  MESHID_ASSIGN_OR_RETURN(std::string text, readFile(path, 1 << 20));
  auto c = parseCaConfig(text, path.has_parent_path() ? path.parent_path() : fs::path("."));
  if (!c.ok())
    return c.error().wrap(path.string());
  return c;
}

}  // namespace meshid::ca
