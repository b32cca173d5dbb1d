// The gRPC face of the CA: Istio's IstioCertificateService and meshid's MeshCA.
// Handlers translate and hold no state: a sign call is handed to the
// SigningQueue and answered from its worker; the Issuer does the work.
#pragma once

#include <memory>
#include <mutex>
#include <set>

#include "ca/issuer.h"
#include "ca/metrics.h"
#include "ca/signing_queue.h"
#include "ca/trust_bundle.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "meshid/v1/ca.grpc.pb.h"

namespace meshid::ca {

// Code and message to a grpc::Status (the codes share numbers).
grpc::Status toGrpcStatus(const Error& error);

// Bearer token, verified client certificate and peer address of a call.
CallerCredentials credentialsFrom(const grpc::CallbackServerContext& ctx);

class IstioCaService final : public istio::v1::auth::IstioCertificateService::CallbackService {
 public:
  explicit IstioCaService(SigningQueue& signing) : signing_(signing) {}
  grpc::ServerUnaryReactor* CreateCertificate(
      grpc::CallbackServerContext* ctx, const istio::v1::auth::IstioCertificateRequest* request,
      istio::v1::auth::IstioCertificateResponse* response) override;

 private:
  SigningQueue& signing_;
};

class MeshCaService final : public meshid::v1::MeshCA::CallbackService {
 public:
  MeshCaService(SigningQueue& signing, TrustBundle& bundle, CaMetrics& metrics)
      : signing_(signing), bundle_(bundle), metrics_(metrics) {}
  ~MeshCaService() override;

  grpc::ServerUnaryReactor* Sign(grpc::CallbackServerContext* ctx,
                                 const meshid::v1::SignRequest* request,
                                 meshid::v1::SignResponse* response) override;
  grpc::ServerUnaryReactor* GetTrustBundle(grpc::CallbackServerContext* ctx,
                                           const meshid::v1::GetTrustBundleRequest* request,
                                           meshid::v1::TrustBundle* response) override;
  grpc::ServerWriteReactor<meshid::v1::TrustBundle>* WatchTrustBundle(
      grpc::CallbackServerContext* ctx,
      const meshid::v1::WatchTrustBundleRequest* request) override;

  // Ends every open watch stream with UNAVAILABLE (clients reconnect to
  // another replica); called before the server shuts down.
  void closeWatches();

  struct WatchState;  // shared by a stream and the bundle's watcher callback

 private:
  SigningQueue& signing_;
  TrustBundle& bundle_;
  CaMetrics& metrics_;
  std::mutex mu_;
  std::set<std::shared_ptr<WatchState>> watches_;  // guarded by mu_
  bool closing_ = false;                           // guarded by mu_
  friend class BundleWatchReactor;
};

}  // namespace meshid::ca
