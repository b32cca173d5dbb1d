// Strict YAML config reading: every mapping lists the keys it knows, and an
// unknown one (a typo) is an error naming it. Header-only so common does not
// link yaml-cpp; include it only from config parsers that do.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid {

inline Result<void> onlyKeys(const YAML::Node& node, std::string_view where,
                             std::initializer_list<std::string_view> allowed) {
  if (!node.IsMap()) {
    return Error::invalidArgument(fmt::format("{} must be a mapping", where));
  }
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Error::invalidArgument(fmt::format("unknown key \"{}\" in {}", key, where));
    }
  }
  return okResult();
}

}  // namespace meshid
