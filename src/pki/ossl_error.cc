#include "pki/ossl_error.h"

#include <openssl/err.h>

namespace meshid::pki {

std::string drainOpensslErrors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) {
      out += "; ";
    }
    out += reason ? reason : "unknown openssl error";
  }
  return out;
}

Error opensslError(Code code, std::string_view what) {
  std::string reasons = drainOpensslErrors();
  std::string message(what);
  if (!reasons.empty()) {
    message += " (" + reasons + ")";
  }
  return Error{code, std::move(message)};
}

}  // namespace meshid::pki
