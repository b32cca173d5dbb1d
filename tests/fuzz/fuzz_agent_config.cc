// agent.yaml: hostile YAML must give an error, never a crash or a config
// that breaks the rules parseAgentConfig promises.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto c = meshid::agent::parseAgentConfig(input, "/etc/meshid", {{"SECRET_TTL", "1h"}});
  if (c.ok()) {
    // What a parsed config guarantees.
    if (c->ca.addresses.empty() || c->ttl.count() < 2 || c->workers == 0) {
      std::abort();
    }
    for (const auto& e : c->entries) {
      if (e.selectors.empty() && !e.file_sink)
        std::abort();
    }
  }
  return 0;
}
