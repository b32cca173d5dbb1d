// Human durations on the command line and in config: "90s", "10m", "1h30m",
// "24h", "30d" (d = 24h, as operators write CA lifetimes).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid {

// Positive durations only; a bare number is refused (the unit is never guessed).
Result<std::chrono::seconds> parseDuration(std::string_view text);

// "23h59m", "14d 2h", "45s", "-3m" for something already past: short and
// readable, not exact.
std::string formatDuration(std::chrono::seconds d);

// RFC 3339 in UTC, e.g. "2026-11-25T09:06:24Z".
std::string formatRfc3339(std::chrono::system_clock::time_point t);

// Accepts RFC 3339 with "Z" or a numeric offset; used for `--at`.
Result<std::chrono::system_clock::time_point> parseRfc3339(std::string_view text);

}  // namespace meshid
