#include "pki/chain.h"

#include <fmt/format.h>

#include "common/duration.h"
#include "pki/certificate.h"
#include "pki/key.h"
#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

std::string ago(SystemTime then, SystemTime now) {
  return formatDuration(std::chrono::duration_cast<Seconds>(now - then));
}

bool namesATrustedRoot(const X509* cert, const std::vector<X509Ptr>& roots) {
  for (const auto& r : roots) {
    if (X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(r.get())) == 0) {
      return true;
    }
  }
  return false;
}

Error explainVerifyFailure(X509_STORE_CTX* ctx, const std::vector<X509Ptr>& roots, SystemTime at) {
  int err = X509_STORE_CTX_get_error(ctx);
  int depth = X509_STORE_CTX_get_error_depth(ctx);
  X509* cert = X509_STORE_CTX_get_current_cert(ctx);
  std::string who = cert ? certificateLabel(cert) : fmt::format("certificate at depth {}", depth);
  std::string message;
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      message = fmt::format("expired: {} expired at {} ({} ago)", who,
                            formatRfc3339(notAfter(cert)), ago(notAfter(cert), at));
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      message = fmt::format("not yet valid: {} is valid from {} (in {})", who,
                            formatRfc3339(notBefore(cert)), ago(at, notBefore(cert)));
      break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      if (cert != nullptr && namesATrustedRoot(cert, roots)) {
        // The usual case after `ca init` ran twice: same names, other keys.
        message = fmt::format(
            "unknown issuer: {} names the trusted root \"{}\" as its issuer, but was not signed "
            "by that root's key: the chain belongs to another root with the same name",
            who, issuerString(cert));
      } else {
        message = fmt::format(
            "unknown issuer: no certificate in the chain or the trusted roots issued {} (its "
            "issuer is \"{}\"): an intermediate is missing, or the chain belongs to another root",
            who, cert ? issuerString(cert) : "?");
      }
      break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      message = fmt::format(
          "unknown root: the chain ends at self-signed {}, which is not a trusted root", who);
      break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      message = fmt::format("bad signature: {} is not signed by the key of its issuer \"{}\"", who,
                            cert ? issuerString(cert) : "?");
      break;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
      message = fmt::format(
          "not a CA: {} signed another certificate but is not a CA with keyCertSign", who);
      break;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      message = fmt::format("path length exceeded: {} allows fewer CAs below it", who);
      break;
    case X509_V_ERR_INVALID_PURPOSE:
      message = fmt::format("wrong purpose: {} is not allowed for this use", who);
      break;
    default:
      message =
          fmt::format("chain does not verify: {} at {}", X509_verify_cert_error_string(err), who);
  }
  drainOpensslErrors();
  return Error::unauthenticated(std::move(message));
}

}  // namespace

std::string certificateLabel(const X509* cert) {
  if (!isCa(cert)) {
    std::vector<std::string> uris = uriSans(cert);
    if (!uris.empty()) {
      return "leaf " + uris.front();
    }
    return fmt::format("leaf \"{}\"", subjectString(cert));
  }
  return fmt::format("{} \"{}\"", isSelfSigned(cert) ? "root CA" : "CA", subjectString(cert));
}

Result<SpiffeId> checkSvidLeaf(const X509* leaf) {
  X509* x = const_cast<X509*>(leaf);
  if (isCa(leaf)) {
    return Error::unauthenticated(
        "leaf certificate is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must not be");
  }
  uint32_t ku = X509_get_key_usage(x);
  if (ku != UINT32_MAX && (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0) {
    return Error::unauthenticated(
        "leaf certificate has the keyCertSign or cRLSign key usage; an X.509-SVID leaf must not");
  }
  std::vector<std::string> uris = uriSans(leaf);
  if (uris.empty()) {
    return Error::unauthenticated("leaf certificate has no URI SAN, so no SPIFFE ID");
  }
  if (uris.size() > 1) {
    return Error::unauthenticated(fmt::format(
        "leaf certificate has {} URI SANs; an X.509-SVID has exactly one", uris.size()));
  }
  auto id = SpiffeId::parse(uris.front());
  if (!id.ok()) {
    return Error::unauthenticated("leaf certificate's URI SAN is not a valid SPIFFE ID: " +
                                  id.error().message);
  }
  if (id->isTrustDomainId()) {
    return Error::unauthenticated(fmt::format(
        "leaf SPIFFE ID {} has no path: it names a trust domain, not a workload", id->str()));
  }
  return std::move(id).value();
}

Result<VerifiedChain> verifyChain(const X509* leaf, const std::vector<X509Ptr>& intermediates,
                                  const std::vector<X509Ptr>& roots,
                                  const ChainVerifyOptions& options) {
  if (leaf == nullptr) {
    return Error::invalidArgument("no leaf certificate");
  }
  if (roots.empty()) {
    return Error::invalidArgument("no trusted roots");
  }
  X509StorePtr store(X509_STORE_new());
  for (const auto& r : roots) {
    X509_STORE_add_cert(store.get(), r.get());
  }
  X509StackPtr untrusted(sk_X509_new_null());
  for (const auto& c : intermediates) {
    sk_X509_push(untrusted.get(), shareX509(c.get()).release());
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), const_cast<X509*>(leaf), untrusted.get()) != 1) {
    return opensslError(Code::kInternal, "cannot set up chain verification");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, std::chrono::system_clock::to_time_t(options.at));
  if (X509_verify_cert(ctx.get()) != 1) {
    return explainVerifyFailure(ctx.get(), roots, options.at);
  }
  VerifiedChain out;
  X509StackPtr chain(X509_STORE_CTX_get1_chain(ctx.get()));
  for (int i = 0; i < sk_X509_num(chain.get()); ++i) {
    out.path.push_back(shareX509(sk_X509_value(chain.get(), i)));
  }
  if (options.svid_leaf_checks) {
    MESHID_ASSIGN_OR_RETURN(SpiffeId id, checkSvidLeaf(leaf));
    out.spiffe_id = std::move(id);
  }
  if (options.expected_id) {
    std::vector<std::string> uris = uriSans(leaf);
    bool match = out.spiffe_id ? *out.spiffe_id == *options.expected_id
                               : (uris.size() == 1 && uris.front() == options.expected_id->str());
    if (!match) {
      return Error::unauthenticated(fmt::format(
          "wrong SPIFFE ID: the certificate is {}, expected {}",
          uris.empty() ? std::string("<none>") : uris.front(), options.expected_id->str()));
    }
  }
  return out;
}

Result<void> checkKeyMatchesCertificate(const X509* cert, const EVP_PKEY* private_key) {
  if (!samePublicKey(X509_get0_pubkey(cert), private_key)) {
    return Error::failedPrecondition(
        fmt::format("key mismatch: the private key does not belong to {}", certificateLabel(cert)));
  }
  return okResult();
}

}  // namespace meshid::pki
