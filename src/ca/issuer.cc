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
      config_(std::move(config)),
      log_(spdlog::get("issuance")) {
  if (!log_)
    log_ = spdlog::default_logger();
}

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

Error Issuer::refuseOverloaded(const SignCall& call) {
  auto started = std::chrono::steady_clock::now();
  metrics_.csrReceived(call.api);
  Error error = Error::resourceExhausted(
      fmt::format("CA is at its limit of {} concurrent signings; retry with backoff",
                  config_.max_concurrent_signings));
  finishCall(call, error, DenialReason::kOverloaded, started);
  return error;
}

Result<SignResult> Issuer::sign(const SignCall& call) {
  // Admission first: an overloaded CA answers at once, before any crypto.
  if (in_flight_.fetch_add(1) >= config_.max_concurrent_signings) {
    in_flight_.fetch_sub(1);
    return refuseOverloaded(call);
  }
  auto results = signBatch(std::span<const SignCall>(&call, 1));
  in_flight_.fetch_sub(1);
  return std::move(results.front());
}

struct Issuer::Signed {
  SignResult result;
  store::IssuanceRecord record;
  Seconds ttl;
};

std::vector<Result<SignResult>> Issuer::signBatch(std::span<const SignCall> calls) {
  auto started = std::chrono::steady_clock::now();
  metrics_.batchSigned(calls.size());
  std::vector<Result<Signed>> made;
  made.reserve(calls.size());
  std::vector<DenialReason> reasons(calls.size(), DenialReason::kBadCsr);
  std::vector<const store::IssuanceRecord*> records;
  std::unique_ptr<BatchTools> tools = takeTools();
  for (size_t i = 0; i < calls.size(); ++i) {
    metrics_.csrReceived(calls[i].api);
    metrics_.signingStarted();
    made.push_back(signOne(calls[i], *tools, &reasons[i]));
    if (made.back().ok())
      records.push_back(&made.back()->record);
  }
  returnTools(std::move(tools));
  // One transaction for the batch; nothing is answered unrecorded.
  Result<void> recorded = records.empty() ? okResult() : store_.recordIssuances(records);
  std::vector<Result<SignResult>> out;
  out.reserve(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!made[i].ok()) {
      out.emplace_back(made[i].error());
    } else if (!recorded.ok()) {
      reasons[i] = DenialReason::kStoreFailed;
      log_->error("issuance not recorded, certificate withheld spiffe_id={} serial={} error={}",
                  made[i]->record.spiffe_id, made[i]->record.serial, recorded.error().message);
      out.emplace_back(Error::unavailable("the CA cannot record issuances right now; retry later"));
    } else {
      const store::IssuanceRecord& r = made[i]->record;
      metrics_.issued(r.signer);
      log_->info("CSR signed spiffe_id={} serial={} not_after={} ttl={} caller_method={} api={}",
                 r.spiffe_id, r.serial, formatRfc3339(r.not_after), formatDuration(made[i]->ttl),
                 r.method, r.api);
      out.emplace_back(std::move(made[i]->result));
    }
    metrics_.signingFinished();
    finishCall(calls[i], out.back(), reasons[i], started);
  }
  // The batch's lines leave together, before any of its answers.
  log_->flush();
  return out;
}

void Issuer::finishCall(const SignCall& call, const Result<SignResult>& result, DenialReason reason,
                        std::chrono::steady_clock::time_point started) {
  auto from = call.received == std::chrono::steady_clock::time_point{} ? started : call.received;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
  metrics_.requestFinished(call.api, result.ok(), seconds);
  if (!result.ok()) {
    metrics_.denied(call.api, reason);
    log_->debug("CSR refused api={} reason={} code={} peer={} message={}", apiName(call.api),
                denialLabel(reason), codeName(result.error().code), call.credentials.peer,
                result.error().message);
  }
}

std::unique_ptr<Issuer::BatchTools> Issuer::takeTools() {
  {
    std::lock_guard lock(tools_mu_);
    if (!idle_tools_.empty()) {
      auto t = std::move(idle_tools_.back());
      idle_tools_.pop_back();
      return t;
    }
  }
  return std::make_unique<BatchTools>();
}

void Issuer::returnTools(std::unique_ptr<BatchTools> tools) {
  std::lock_guard lock(tools_mu_);
  idle_tools_.push_back(std::move(tools));
}

Result<Issuer::Signed> Issuer::signOne(const SignCall& call, BatchTools& tools,
                                       DenialReason* reason) {
  MESHID_ASSIGN_OR_RETURN(Identity caller, authenticate(call.credentials, reason));

  *reason = DenialReason::kBadCsr;
  auto csr = pki::parseCsr(call.csr, &tools.verifier);
  if (!csr.ok()) {
    return csr.error().wrap("invalid certificate signing request");  // weak keys included
  }
  MESHID_ASSIGN_OR_RETURN(SignDecision decision, decide(caller, *csr, call.requested_ttl_seconds,
                                                        call.api, config_.policy, reason));

  *reason = DenialReason::kSignerUnavailable;
  SystemTime now = clock_.now();
  pki::SvidRequest request{.spki_der = csr->spki_der,
                           .spiffe_id = decision.spiffe_id,
                           .lifetime = decision.ttl,
                           .now = now,
                           .serial_random = &tools.serial_random};
  auto issued = authority_.sign(request);
  if (!issued.ok()) {
    log_->error("signing failed signer={} spiffe_id={} error={}", authority_.name(),
                decision.spiffe_id.str(), issued.error().message);
    return issued.error();
  }
  store::IssuanceRecord record{.serial = issued->leaf.serial_hex,
                               .spiffe_id = decision.spiffe_id.str(),
                               .not_before = issued->leaf.not_before,
                               .not_after = issued->leaf.not_after,
                               .signer = authority_.name(),
                               .caller = caller.spiffe_id.str(),
                               .method = caller.method,
                               .api = apiName(call.api),
                               .issued_at = now};
  return Signed{SignResult{decision.spiffe_id, std::move(issued->leaf), std::move(issued->material),
                           bundle_.current()},
                std::move(record), decision.ttl};
}

}  // namespace meshid::ca
