#pragma once
// An invariant a fuzz target checks: abort, so libFuzzer keeps the input that
// broke it (a plain assert vanishes under NDEBUG).
#include <cstdlib>

namespace meshid::fuzz {

inline void require(bool cond) {
  if (!cond)
    std::abort();
}

}  // namespace meshid::fuzz
