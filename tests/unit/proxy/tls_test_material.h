// A CA and a workload certificate valid now (OpenSSL's handshake checks
// validity against the real clock), as the PEM a proxy is given.
#pragma once

#include <string>

#include "pki/certificate.h"
#include "pki/key.h"
#include "unit/pki/test_ca.h"

namespace meshid::proxy::testing {

struct ProxyPem {
  std::string chain;
  std::string key;
  std::string bundle;
};

inline ProxyPem proxyPem(const pki::testing::TestCa& ca, std::string_view id, SystemTime now) {
  auto key = pki::testing::newKey();
  auto leaf = ca.issueLeaf(key.get(), id, std::chrono::hours(1), now);
  return ProxyPem{pki::certificateToPem(leaf.get()) + pki::certificateToPem(ca.intermediate.get()),
                  meshid::testing::orThrow(pki::privateKeyToPem(key.get())),
                  pki::certificateToPem(ca.root.get())};
}

}  // namespace meshid::proxy::testing
