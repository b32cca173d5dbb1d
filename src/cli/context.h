// What every command gets from main: the clock and where output goes.
#pragma once

#include <iostream>

#include "common/clock.h"

namespace meshid::cli {

struct Context {
  const Clock& clock;
  std::ostream& out = std::cout;
  std::ostream& err = std::cerr;
  int exit_code = 0;
};

// Exit codes: 0 ok, 1 the operation failed (or a verdict was negative), 2 usage.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

}  // namespace meshid::cli
