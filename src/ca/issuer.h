// The signing pipeline, visible in one place:
//   admission (bounded concurrency) -> authenticate -> parse CSR -> policy ->
//   sign -> record -> answer.
// Transport-independent: the gRPC services only translate in and out. Calls
// are signed in batches (SigningQueue): each is judged on its own, the batch's
// certificates are recorded in one transaction and its log lines written at once.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "ca/authenticator.h"
#include "ca/authority.h"
#include "ca/metrics.h"
#include "ca/policy.h"
#include "ca/trust_bundle.h"
#include "common/clock.h"
#include "store/store.h"

namespace spdlog {
class logger;
}

namespace meshid::ca {

struct IssuerConfig {
  PolicyConfig policy;
  // Beyond this many signings at once, callers get RESOURCE_EXHAUSTED at once
  // instead of queueing without bound.
  size_t max_concurrent_signings = 64;
};

struct SignCall {
  Api api = Api::kMeshid;
  CallerCredentials credentials;
  std::string_view csr;
  int64_t requested_ttl_seconds = 0;
  // When the transport took the call; the latency histogram counts from here
  // (queueing included). Unset: from when signing starts.
  std::chrono::steady_clock::time_point received{};
};

struct SignResult {
  pki::SpiffeId spiffe_id;
  pki::SvidIssuer::Leaf leaf;                     // der, pem, serial, validity
  std::shared_ptr<const SigningMaterial> signer;  // signer->chain_pem follows the leaf
  std::shared_ptr<const BundleSnapshot> bundle;
};

class Issuer {
 public:
  Issuer(std::vector<std::unique_ptr<Authenticator>> authenticators, Authority& authority,
         TrustBundle& bundle, store::Store& store, CaMetrics& metrics, const Clock& clock,
         IssuerConfig config);

  // Errors carry the gRPC code to answer with: UNAUTHENTICATED (no or bad
  // credential), PERMISSION_DENIED (foreign identity), INVALID_ARGUMENT (bad
  // CSR, key type, lifetime), RESOURCE_EXHAUSTED (overloaded),
  // FAILED_PRECONDITION/UNAVAILABLE (signer or store cannot work now).
  // Nothing is recorded for a refused request; nothing is answered unrecorded.
  Result<SignResult> sign(const SignCall& call);

  // Signs several calls at once, with no admission control (the caller, a
  // SigningQueue, bounds how many wait). Each call is authenticated, checked
  // and signed on its own; the certificates are then recorded in one
  // transaction, and if that fails every one of them is withheld
  // (UNAVAILABLE). Results are in the calls' order.
  std::vector<Result<SignResult>> signBatch(std::span<const SignCall> calls);

  // The refusal for a call turned away because the CA is at its limit of
  // concurrent signings, counted like any other refusal.
  Error refuseOverloaded(const SignCall& call);

  size_t maxConcurrentSignings() const { return config_.max_concurrent_signings; }

  // Authenticates only (for calls that need an identity but sign nothing).
  Result<Identity> authenticate(const CallerCredentials& credentials, DenialReason* reason);

 private:
  struct Signed;  // a certificate made but not yet recorded
  // What a batch signs with that each signing thread needs its own of: kept
  // between batches because both are costly to make or to fill.
  struct BatchTools {
    pki::SignatureVerifier verifier;
    pki::SerialRandom serial_random;
  };
  Result<Signed> signOne(const SignCall& call, BatchTools& tools, DenialReason* reason);
  // Tools for one batch, lent from idle_tools_ (or made); returned after.
  std::unique_ptr<BatchTools> takeTools();
  void returnTools(std::unique_ptr<BatchTools> tools);
  // Metrics and the refusal's debug line for one finished call.
  void finishCall(const SignCall& call, const Result<SignResult>& result, DenialReason reason,
                  std::chrono::steady_clock::time_point started);

  std::vector<std::unique_ptr<Authenticator>> authenticators_;
  Authority& authority_;
  TrustBundle& bundle_;
  store::Store& store_;
  CaMetrics& metrics_;
  const Clock& clock_;
  const IssuerConfig config_;
  std::shared_ptr<spdlog::logger> log_;  // "issuance" if registered, else the default
  std::atomic<size_t> in_flight_{0};
  std::mutex tools_mu_;
  std::vector<std::unique_ptr<BatchTools>> idle_tools_;  // guarded by tools_mu_
};

}  // namespace meshid::ca
