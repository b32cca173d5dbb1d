// What every command gets from main: the clock, its arguments and where output goes.
#pragma once

#include <iostream>

#include "common/clock.h"

namespace meshid::cli {

struct Context {
  const Clock& clock;
  char* const* argv = nullptr;  // main's, for a server that restarts itself (thread_cache.h)
  std::ostream& out = std::cout;
  std::ostream& err = std::cerr;
  int exit_code = 0;
};

// Exit codes: 0 ok, 1 the operation failed (or a verdict was negative), 2 usage.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

}  // namespace meshid::cli
