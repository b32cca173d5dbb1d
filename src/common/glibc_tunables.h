// GLIBC_TUNABLES as a string: glibc reads it once, when a process starts
// (https://www.gnu.org/software/libc/manual/html_node/Tunables.html), as
// colon-separated name=value pairs. Only the text is handled here; restarting
// a process with it is the caller's business (cli/thread_cache.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace meshid {

inline constexpr std::string_view kTcacheCountTunable = "glibc.malloc.tcache_count";

// The value of tunable `name` in `tunables`, if it is there (the last one wins,
// as in glibc); nullopt when absent.
std::optional<std::string_view> findTunable(std::string_view tunables, std::string_view name);

// `current` (null or empty: unset) with name=value appended. `name` must not be
// in `current` already.
std::string withTunable(const char* current, std::string_view name, std::string_view value);

}  // namespace meshid
