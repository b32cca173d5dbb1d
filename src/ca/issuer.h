// The signing pipeline, visible in one place:
//   admission (bounded concurrency) -> authenticate -> parse CSR -> policy ->
//   sign -> record -> answer.
// Transport-independent: the gRPC services only translate in and out.
#pragma once

#include <atomic>
#include <memory>
#include <string_view>
#include <vector>

#include "ca/authenticator.h"
#include "ca/authority.h"
#include "ca/metrics.h"
#include "ca/policy.h"
#include "ca/trust_bundle.h"
#include "common/clock.h"
#include "store/store.h"

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

  // Authenticates only (for calls that need an identity but sign nothing).
  Result<Identity> authenticate(const CallerCredentials& credentials, DenialReason* reason);

 private:
  Result<SignResult> signAdmitted(const SignCall& call, DenialReason* reason);

  std::vector<std::unique_ptr<Authenticator>> authenticators_;
  Authority& authority_;
  TrustBundle& bundle_;
  store::Store& store_;
  CaMetrics& metrics_;
  const Clock& clock_;
  const IssuerConfig config_;
  std::atomic<size_t> in_flight_{0};
};

}  // namespace meshid::ca
