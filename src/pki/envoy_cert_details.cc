#include "pki/envoy_cert_details.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/duration.h"
#include "pki/certificate.h"

namespace meshid::pki {

nlohmann::json envoyCertDetails(const X509* cert, const std::string& path, SystemTime now) {
  using nlohmann::json;
  auto info = describeCertificate(cert);
  json sans = json::array();
  for (const auto& u : info.uri_sans)
    sans.push_back({{"uri", u}});
  for (const auto& d : info.dns_sans)
    sans.push_back({{"dns", d}});
  for (const auto& ip : info.ip_sans)
    sans.push_back({{"ip_address", ip}});
  auto left = std::chrono::duration_cast<std::chrono::hours>(info.not_after - now).count();
  return json{{"path", path},
              {"serial_number", info.serial_hex},
              {"subject_alt_names", sans},
              // Envoy's uint64 is a JSON string; an expired certificate shows 0.
              {"days_until_expiration", std::to_string(std::max<int64_t>(0, left / 24))},
              {"valid_from", formatRfc3339(info.not_before)},
              {"expiration_time", formatRfc3339(info.not_after)}};
}

}  // namespace meshid::pki
