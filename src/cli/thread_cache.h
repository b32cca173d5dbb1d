// glibc keeps at most 7 freed blocks of each size per thread (its tcache);
// the rest go through the arena's locked paths (_int_free, consolidation). An
// ECDSA verify or sign in OpenSSL 3.0 frees more blocks of one size at once
// than that (its BN_CTX, the points of a multiplication), and with glibc's
// default the CA spent 4.8 % of its CPU in malloc and free (docs/PERFORMANCE.md,
// "The allocator's thread cache"). glibc takes the count only from
// GLIBC_TUNABLES when a process starts, so a server that wants a larger one
// execs itself again, same PID and arguments, before it opens anything.
#pragma once

#include <cstddef>
#include <string>

namespace meshid::cli {

struct ThreadCacheNote {
  bool warning = false;  // the count asked for is not in force, and not by choice
  std::string line;      // for the log, once logging is set up
};

// Returns at once when `count` is 0 (glibc's default stays), when GLIBC_TUNABLES
// names a tcache count already (the environment's choice stands; this is also
// how the restarted process knows it is done), when glibc is not the C library,
// or when the process runs set-user-ID (glibc would drop the tunable, and the
// exec would repeat). Otherwise exec()s /proc/self/exe with `argv` and
// GLIBC_TUNABLES extended, and returns only if that fails.
ThreadCacheNote ensureThreadCache(size_t count, char* const* argv);

}  // namespace meshid::cli
