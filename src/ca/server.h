// `meshid ca serve`: everything the CA runs, wired from its config.
#pragma once

#include <memory>

#include "ca/config.h"
#include "common/clock.h"
#include "common/result.h"

namespace meshid::ca {

class CaServer {
 public:
  // Opens state, loads or makes the signer, starts gRPC and the admin port.
  static Result<std::unique_ptr<CaServer>> start(const CaConfig& config, const Clock& clock);
  virtual ~CaServer() = default;

  virtual int grpcPort() const = 0;
  virtual int adminPort() const = 0;
  // Graceful: stops accepting, lets in-flight requests finish (up to
  // `grace`), ends watch streams, stops every thread.
  virtual void shutdown(std::chrono::milliseconds grace) = 0;
};

}  // namespace meshid::ca
