// A CA and a workload certificate valid now (OpenSSL's handshake checks
// validity against the real clock), as the PEM a proxy is given.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "pki/certificate.h"
#include "pki/key.h"
#include "proxy/config.h"
#include "proxy/tls_snapshot.h"
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

// A proxy's certificate snapshot (its contexts) for a workload of
// example.org. The snapshot reads `clock` (its session cache): it must
// outlive it. `own_records`: tls.record_layer is meshid (the default).
inline std::shared_ptr<const TlsSnapshot> proxySnapshot(const Clock& clock,
                                                        bool own_records = true) {
  using namespace std::chrono_literals;
  ProxyConfig config{meshid::testing::orThrow(pki::TrustDomain::parse("example.org"))};
  config.own_record_layer = own_records;
  auto ca = pki::testing::TestCa::create({.now = clock.now() - 1h});
  auto pem = proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock.now() - 1min);
  return meshid::testing::orThrow(buildSnapshot(config, pem.chain, pem.key, pem.bundle, clock, 1));
}

}  // namespace meshid::proxy::testing
