// Where the proxy's certificates come from: something that feeds material
// into a SnapshotStore, first once at startup (the proxy does not listen
// without a certificate), then whenever it changes.
#pragma once

#include <functional>
#include <memory>

#include "common/result.h"
#include "proxy/config.h"
#include "proxy/snapshot_store.h"

namespace meshid::proxy {

class CertSource {
 public:
  using Listener = std::function<void(bool ok)>;  // after each update attempt

  virtual ~CertSource() = default;
  // Returns once the first snapshot is published, or why there is none.
  virtual Result<void> loadFirst() = 0;
  virtual void start(Listener on_update) = 0;
  virtual void stop() = 0;
};

// Makes the source proxy.yaml asks for. The standalone meshid-proxy binary
// has no gRPC, so its factory knows files only.
using CertSourceFactory =
    std::function<Result<std::unique_ptr<CertSource>>(const ProxyConfig&, SnapshotStore&)>;

Result<std::unique_ptr<CertSource>> makeFileCertSource(const ProxyConfig& config,
                                                       SnapshotStore& store);

}  // namespace meshid::proxy
