// The CA's gRPC face on our own transport (rpc::GrpcServer): Istio's
// IstioCertificateService and meshid's MeshCA. Handlers translate and hold no
// state: a sign call is handed to the SigningQueue and answered from its
// worker; the Issuer does the work.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "ca/issuer.h"
#include "ca/metrics.h"
#include "ca/signing_queue.h"
#include "ca/trust_bundle.h"
#include "rpc/grpc_server.h"

namespace meshid::ca {

// The method paths served, as gRPC names them ("/package.Service/Method").
inline constexpr std::string_view kIstioCreateCertificate =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";
inline constexpr std::string_view kMeshSign = "/meshid.v1.MeshCA/Sign";
inline constexpr std::string_view kMeshGetTrustBundle = "/meshid.v1.MeshCA/GetTrustBundle";
inline constexpr std::string_view kMeshWatchTrustBundle = "/meshid.v1.MeshCA/WatchTrustBundle";

// Bearer token, verified client certificate and peer address of a call.
CallerCredentials credentialsFrom(const rpc::Call& call);

class CaServices {
 public:
  CaServices(SigningQueue& signing, TrustBundle& bundle, CaMetrics& metrics)
      : signing_(signing), bundle_(bundle), metrics_(metrics) {}
  ~CaServices();
  CaServices(const CaServices&) = delete;
  CaServices& operator=(const CaServices&) = delete;

  // Every method above, for GrpcServerOptions::handlers. The handlers refer
  // to this object, which must outlive the server.
  std::map<std::string, rpc::Handler, std::less<>> handlers();

  // Ends every open watch stream with UNAVAILABLE (clients reconnect to
  // another replica); called before the server shuts down.
  void closeWatches();

  struct WatchState;  // shared by a stream and the bundle's watcher callback

 private:
  void createCertificate(rpc::CallPtr call);
  void sign(rpc::CallPtr call);
  void getTrustBundle(rpc::CallPtr call);
  void watchTrustBundle(rpc::CallPtr call);
  void endWatch(const std::shared_ptr<WatchState>& state);

  SigningQueue& signing_;
  TrustBundle& bundle_;
  CaMetrics& metrics_;
  std::mutex mu_;
  std::set<std::shared_ptr<WatchState>> watches_;  // guarded by mu_
  bool closing_ = false;                           // guarded by mu_
};

}  // namespace meshid::ca
