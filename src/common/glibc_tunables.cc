#include "common/glibc_tunables.h"

namespace meshid {

std::optional<std::string_view> findTunable(std::string_view tunables, std::string_view name) {
  std::optional<std::string_view> found;
  while (!tunables.empty()) {
    size_t end = tunables.find(':');
    std::string_view pair = tunables.substr(0, end);
    tunables = end == std::string_view::npos ? std::string_view() : tunables.substr(end + 1);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name)
      found = pair.substr(eq + 1);
  }
  return found;
}

std::string withTunable(const char* current, std::string_view name, std::string_view value) {
  std::string out = current ? current : "";
  if (!out.empty())
    out += ':';
  out.append(name).append("=").append(value);
  return out;
}

}  // namespace meshid
