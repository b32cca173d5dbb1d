#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid::pki {

// Empties OpenSSL's thread-local error queue and returns its reasons joined
// with "; " (empty if there were none). Call after every failed OpenSSL call so
// a stale error never leaks into an unrelated later failure.
std::string drainOpensslErrors();

// An Error whose message is `what` plus the drained OpenSSL reasons.
Error opensslError(Code code, std::string_view what);

}  // namespace meshid::pki
