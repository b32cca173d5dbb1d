#include "cli/output.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/context.h"
#include "common/duration.h"

namespace meshid::cli {

std::string_view certificateRole(const pki::CertificateInfo& info) {
  if (!info.is_ca) {
    return "leaf";
  }
  return info.self_signed ? "root CA" : "intermediate CA";
}

std::string validityRemark(const pki::CertificateInfo& info, SystemTime now) {
  auto secs = [](auto d) { return std::chrono::duration_cast<Seconds>(d); };
  if (now < info.not_before) {
    return "not valid for another " + formatDuration(secs(info.not_before - now));
  }
  if (now >= info.not_after) {
    return "expired " + formatDuration(secs(now - info.not_after)) + " ago";
  }
  return "expires in " + formatDuration(secs(info.not_after - now));
}

nlohmann::json certificateJson(const pki::CertificateInfo& info, SystemTime now) {
  nlohmann::json j;
  j["role"] = certificateRole(info);
  j["subject"] = info.subject;
  j["issuer"] = info.issuer;
  j["spiffe_id"] = info.spiffe_id ? nlohmann::json(*info.spiffe_id) : nlohmann::json(nullptr);
  j["uri_sans"] = info.uri_sans;
  j["dns_sans"] = info.dns_sans;
  j["ip_sans"] = info.ip_sans;
  j["serial"] = info.serial_hex;
  j["not_before"] = formatRfc3339(info.not_before);
  j["not_after"] = formatRfc3339(info.not_after);
  j["remaining_seconds"] = std::chrono::duration_cast<Seconds>(info.not_after - now).count();
  j["key"] = info.key;
  j["sha256_fingerprint"] = info.sha256_fingerprint;
  j["is_ca"] = info.is_ca;
  j["path_length"] = info.path_length ? nlohmann::json(*info.path_length) : nlohmann::json(nullptr);
  j["self_signed"] = info.self_signed;
  j["key_usage"] = info.key_usage;
  j["ext_key_usage"] = info.ext_key_usage;
  return j;
}

void printCertificate(std::ostream& out, const pki::CertificateInfo& info, SystemTime now,
                      std::string_view heading) {
  auto line = [&](std::string_view field, std::string_view value) {
    out << fmt::format("  {:<12}  {}\n", field, value);
  };
  auto join = [](const std::vector<std::string>& v) {
    return fmt::format("{}", fmt::join(v, ", "));
  };
  out << heading << "\n";
  line("spiffe id", info.spiffe_id ? *info.spiffe_id : "(none)");
  line("subject", info.subject.empty() ? "(empty)" : info.subject);
  line("issuer", info.issuer);
  if (!info.dns_sans.empty())
    line("dns names", join(info.dns_sans));
  if (!info.ip_sans.empty())
    line("ip addresses", join(info.ip_sans));
  if (info.uri_sans.size() > 1)
    line("uri sans", join(info.uri_sans));
  line("serial", info.serial_hex);
  line("valid", fmt::format("{} .. {} ({})", formatRfc3339(info.not_before),
                            formatRfc3339(info.not_after), validityRemark(info, now)));
  line("key", info.key);
  std::string kind(certificateRole(info));
  if (info.path_length)
    kind += fmt::format(", path length {}", *info.path_length);
  line("type", kind);
  if (!info.key_usage.empty())
    line("key usage", join(info.key_usage));
  if (!info.ext_key_usage.empty())
    line("ext usage", join(info.ext_key_usage));
  line("sha256", info.sha256_fingerprint);
}

int reportError(std::ostream& out, std::ostream& err, const Error& error, bool json) {
  if (json) {
    nlohmann::json j;
    j["error"] = {{"code", codeName(error.code)}, {"message", error.message}};
    out << j.dump(2) << "\n";
  } else {
    err << "error: " << error.message << "\n";
  }
  return kExitFailure;
}

}  // namespace meshid::cli
