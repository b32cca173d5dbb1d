// SpiffeId::parse on arbitrary bytes: never crashes, and whatever it accepts
// obeys the standard's shape and survives a second parse unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "pki/spiffe_id.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto id = meshid::pki::SpiffeId::parse(text);
  if (!id.ok()) {
    return 0;
  }
  if (id->str() != text || text.size() > meshid::pki::kMaxSpiffeIdBytes ||
      id->trustDomain().name().empty() || id->path().ends_with('/') ||
      id->path().find("//") != std::string_view::npos) {
    std::abort();
  }
  auto again = meshid::pki::SpiffeId::parse(id->str());
  if (!again.ok() || !(*again == *id)) {
    std::abort();
  }
  (void)meshid::pki::TrustDomain::parse(text);
  return 0;
}
