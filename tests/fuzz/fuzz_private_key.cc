// Private key PEM parsing on arbitrary bytes, with and without a passphrase:
// never crashes, and never returns a key that fails the strength rules.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <openssl/err.h>

#include "pki/key.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (std::string_view pass : {std::string_view{}, std::string_view{"fuzz"}}) {
    auto key = meshid::pki::parsePrivateKeyPem(input, pass);
    if (key.ok() && !meshid::pki::checkKeyStrength(key->get()).ok()) {
      std::abort();
    }
  }
  ERR_clear_error();
  return 0;
}
