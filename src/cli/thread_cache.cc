#include "cli/thread_cache.h"

#include <fmt/format.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/glibc_tunables.h"

namespace meshid::cli {

ThreadCacheNote ensureThreadCache(size_t count, char* const* argv) {
  if (count == 0)
    return {false, "malloc thread cache: glibc's default (limits.malloc_thread_cache: 0)"};
#ifndef __GLIBC__
  (void)argv;
  return {false, "malloc thread cache: the C library is not glibc; left as it is"};
#else
  const std::string want = std::to_string(count);
  const char* env = std::getenv("GLIBC_TUNABLES");
  const bool had_env = env != nullptr;
  const std::string current = had_env ? env : "";
  if (auto set = findTunable(current, kTcacheCountTunable)) {
    if (*set == want)
      return {false, fmt::format("malloc thread cache: {} blocks of each size per thread "
                                 "(GLIBC_TUNABLES {}={})",
                                 count, kTcacheCountTunable, want)};
    return {false, fmt::format("malloc thread cache: {}={} as GLIBC_TUNABLES sets it; "
                               "limits.malloc_thread_cache {} not applied",
                               kTcacheCountTunable, *set, count)};
  }
  if (getauxval(AT_SECURE) != 0)
    return {true,
            "malloc thread cache: glibc's default; a set-user-ID process cannot set "
            "GLIBC_TUNABLES"};
  if (!argv || !argv[0])
    return {true, "malloc thread cache: glibc's default; no arguments to restart with"};
  const std::string value = withTunable(current.c_str(), kTcacheCountTunable, want);
  if (setenv("GLIBC_TUNABLES", value.c_str(), 1) != 0)
    return {true, fmt::format("malloc thread cache: glibc's default; cannot set "
                              "GLIBC_TUNABLES: {}",
                              std::strerror(errno))};
  execv("/proc/self/exe", argv);
  const int err = errno;
  if (had_env)
    setenv("GLIBC_TUNABLES", current.c_str(), 1);
  else
    unsetenv("GLIBC_TUNABLES");
  return {true, fmt::format("malloc thread cache: glibc's default; restarting with "
                            "GLIBC_TUNABLES failed: exec /proc/self/exe: {}",
                            std::strerror(err))};
#endif
}

}  // namespace meshid::cli
