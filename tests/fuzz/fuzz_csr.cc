// parseCsr on arbitrary bytes, checked against OpenSSL's own decoder: what we
// accept as DER, d2i_X509_REQ must decode and X509_REQ_verify must verify.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <openssl/err.h>

#include "pki/csr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto csr = meshid::pki::parseCsr(input);
  if (csr.ok() && input.find("-----BEGIN") == std::string_view::npos) {
    const unsigned char* p = data;
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(size));
    if (req == nullptr || p != data + size || X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
      std::abort();
    }
    X509_REQ_free(req);
  }
  if (csr.ok()) {
    (void)meshid::pki::csrSpiffeId(*csr);
  }
  ERR_clear_error();
  return 0;
}
