// Certificate bundle parsing on arbitrary bytes. A DER certificate we accept
// must re-encode to exactly the input (no silent reinterpretation), and
// describing it must not crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <openssl/err.h>

#include "pki/certificate.h"
#include "pki/chain.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto certs = meshid::pki::parseCertificates(input);
  if (!certs.ok()) {
    return 0;
  }
  if (input.find("-----BEGIN") == std::string_view::npos &&
      meshid::pki::certificateToDer(certs->front().get()) != input) {
    std::abort();
  }
  for (const auto& c : *certs) {
    (void)meshid::pki::describeCertificate(c.get());
    (void)meshid::pki::checkSvidLeaf(c.get());
  }
  ERR_clear_error();
  return 0;
}
