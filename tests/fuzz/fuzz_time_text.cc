// Durations and RFC 3339 times from the command line and config.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto d = meshid::parseDuration(input);
  if (d.ok() && d->count() <= 0) {
    std::abort();
  }
  if (d.ok()) {
    (void)meshid::formatDuration(*d);
  }
  auto t = meshid::parseRfc3339(input);
  if (t.ok()) {
    (void)meshid::formatRfc3339(*t);
  }
  return 0;
}
