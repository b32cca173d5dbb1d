#include "ca/issuer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "pki/csr.h"

namespace meshid::ca {

Issuer::Issuer(std::vector<std::unique_ptr<Authenticator>> authenticators, Authority& authority,
               TrustBundle& bundle, store::Store& store, CaMetrics& metrics, const Clock& clock,
               IssuerConfig config)
    : authenticators_(std::move(authenticators)),
      authority_(authority),
      bundle_(bundle),
      store_(store),
      metrics_(metrics),
      clock_(clock),
      config_(std::move(config)) {}

Result<Identity> Issuer::authenticate(const CallerCredentials& credentials, DenialReason* reason) {
  for (const auto& a : authenticators_) {
    auto r = a->authenticate(credentials);
    if (!r.ok()) {
      *reason = r.error().code == Code::kUnavailable ? DenialReason::kSignerUnavailable
                                                     : DenialReason::kBadCredential;
      return r.error();
    }
    if (*r) {
      return std::move(**r);
    }
  }
  *reason = DenialReason::kNoCredential;
  return Error::unauthenticated(
      "no credential: send a service-account token (authorization: Bearer), a join token, or a "
      "client certificate of this trust domain");
}

Result<SignResult> Issuer::sign(const SignCall& call) {
  auto started = std::chrono::steady_clock::now();
  metrics_.csrReceived(call.api);
  DenialReason reason = DenialReason::kBadCsr;
  Result<SignResult> result = Error::internal("unset");
  // Admission first: an overloaded CA answers at once, before any crypto.
  if (in_flight_.fetch_add(1) >= config_.max_concurrent_signings) {
    in_flight_.fetch_sub(1);
    reason = DenialReason::kOverloaded;
    result = Error::resourceExhausted(
        fmt::format("CA is at its limit of {} concurrent signings; retry with backoff",
                    config_.max_concurrent_signings));
  } else {
    metrics_.signingStarted();
    result = signAdmitted(call, &reason);
    metrics_.signingFinished();
    in_flight_.fetch_sub(1);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  metrics_.requestFinished(call.api, result.ok(), seconds);
  if (!result.ok()) {
    metrics_.denied(call.api, reason);
    spdlog::debug("CSR refused api={} reason={} code={} peer={} message={}", apiName(call.api),
                  denialLabel(reason), codeName(result.error().code), call.credentials.peer,
                  result.error().message);
  }
  return result;
}

Result<SignResult> Issuer::signAdmitted(const SignCall& call, DenialReason* reason) {
  MESHID_ASSIGN_OR_RETURN(Identity caller, authenticate(call.credentials, reason));

  *reason = DenialReason::kBadCsr;
  auto csr = pki::parseCsr(call.csr);
  if (!csr.ok()) {
    return csr.error().wrap("invalid certificate signing request");  // weak keys included
  }
  MESHID_ASSIGN_OR_RETURN(SignDecision decision, decide(caller, *csr, call.requested_ttl_seconds,
                                                        call.api, config_.policy, reason));

  *reason = DenialReason::kSignerUnavailable;
  SystemTime now = clock_.now();
  pki::SvidRequest request{.public_key = csr->public_key.get(),
                           .spki_der = csr->spki_der,
                           .spiffe_id = decision.spiffe_id,
                           .lifetime = decision.ttl,
                           .now = now};
  auto issued = authority_.sign(request);
  if (!issued.ok()) {
    spdlog::error("signing failed signer={} spiffe_id={} error={}", authority_.name(),
                  decision.spiffe_id.str(), issued.error().message);
    return issued.error();
  }

  SignResult out{decision.spiffe_id, std::move(issued->leaf), std::move(issued->material),
                 bundle_.current()};
  store::IssuanceRecord record{.serial = out.leaf.serial_hex,
                               .spiffe_id = decision.spiffe_id.str(),
                               .not_before = out.leaf.not_before,
                               .not_after = out.leaf.not_after,
                               .signer = authority_.name(),
                               .caller = caller.spiffe_id.str(),
                               .method = caller.method,
                               .api = apiName(call.api),
                               .issued_at = now};
  auto recorded = store_.recordIssuance(record);
  if (!recorded.ok()) {
    *reason = DenialReason::kStoreFailed;
    spdlog::error("issuance not recorded, certificate withheld spiffe_id={} serial={} error={}",
                  record.spiffe_id, record.serial, recorded.error().message);
    return Error::unavailable("the CA cannot record issuances right now; retry later");
  }
  metrics_.issued(authority_.name());
  spdlog::info("CSR signed spiffe_id={} serial={} not_after={} ttl={} caller_method={} api={}",
               record.spiffe_id, record.serial, formatRfc3339(record.not_after),
               formatDuration(decision.ttl), caller.method, apiName(call.api));
  return out;
}

}  // namespace meshid::ca
