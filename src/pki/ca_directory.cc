#include "pki/ca_directory.h"

#include <fmt/format.h>

#include <system_error>

#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/issuance.h"
#include "pki/key.h"
#include "pki/memory_key_signer.h"

namespace meshid::pki {
namespace {

namespace fs = std::filesystem;
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

Result<std::vector<X509Ptr>> readCertificates(const fs::path& path) {
  MESHID_ASSIGN_OR_RETURN(std::string pem, readFile(path, kMaxBundleBytes));
  auto certs = parseCertificatesPem(pem);
  if (!certs.ok()) {
    return certs.error().wrap(path.string());
  }
  return certs;
}

bool pathExists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

}  // namespace

std::string_view caLayoutName(CaLayout layout) {
  return layout == CaLayout::kIstioCacerts ? "istio-cacerts" : "cert-manager";
}

Result<CaMaterial> loadCaDirectory(const fs::path& dir, SystemTime now) {
  CaMaterial ca;
  fs::path cert_path, key_path, roots_path, chain_path;
  if (pathExists(dir / kCaCertFile)) {
    ca.layout = CaLayout::kIstioCacerts;
    cert_path = dir / kCaCertFile;
    key_path = dir / kCaKeyFile;
    roots_path = dir / kRootCertFile;
    chain_path = dir / kCertChainFile;
  } else if (pathExists(dir / kTlsCrtFile)) {
    ca.layout = CaLayout::kCertManager;
    cert_path = dir / kTlsCrtFile;  // the signing certificate, optionally followed by its chain
    key_path = dir / kTlsKeyFile;
    roots_path = dir / kCaCrtFile;
  } else {
    return Error::notFound(
        fmt::format("{} holds no CA: expected {} (Istio cacerts) or {} (cert-manager)",
                    dir.string(), kCaCertFile, kTlsCrtFile));
  }

  MESHID_ASSIGN_OR_RETURN(std::vector<X509Ptr> certs, readCertificates(cert_path));
  MESHID_ASSIGN_OR_RETURN(std::string key_pem, readFile(key_path, kMaxKeyFileBytes));
  auto key = parsePrivateKeyPem(key_pem);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!key.ok()) {
    return key.error().wrap(key_path.string());
  }
  ca.signing_key = std::move(key).value();
  MESHID_ASSIGN_OR_RETURN(ca.roots, readCertificates(roots_path));

  std::vector<X509Ptr> upper;
  if (!chain_path.empty() && pathExists(chain_path)) {
    MESHID_ASSIGN_OR_RETURN(upper, readCertificates(chain_path));
  }
  ca.signing_cert = shareX509(certs.front().get());
  // Served chain: the signing cert, then every other CA given, never a root.
  ca.chain.push_back(shareX509(ca.signing_cert.get()));
  for (auto* list : {&certs, &upper}) {
    for (auto& c : *list) {
      if (X509_cmp(c.get(), ca.signing_cert.get()) == 0 || isSelfSigned(c.get())) {
        continue;
      }
      ca.chain.push_back(shareX509(c.get()));
    }
  }

  X509* signing = ca.signing_cert.get();
  if (!isCa(signing)) {
    return Error::failedPrecondition(
        fmt::format("{}: {} is not a CA (basicConstraints CA:TRUE missing)", cert_path.string(),
                    subjectString(signing)));
  }
  uint32_t ku = X509_get_key_usage(signing);
  if (ku != UINT32_MAX && (ku & KU_KEY_CERT_SIGN) == 0) {
    return Error::failedPrecondition(fmt::format("{}: {} lacks the keyCertSign key usage",
                                                 cert_path.string(), subjectString(signing)));
  }
  auto match = checkKeyMatchesCertificate(signing, ca.signing_key.get());
  if (!match.ok()) {
    return match.error().wrap(key_path.string());
  }
  std::vector<X509Ptr> above(ca.chain.size() - 1);
  for (size_t i = 1; i < ca.chain.size(); ++i) {
    above[i - 1] = shareX509(ca.chain[i].get());
  }
  ChainVerifyOptions opts{.at = now, .expected_id = std::nullopt, .svid_leaf_checks = false};
  auto verified = verifyChain(signing, above, ca.roots, opts);
  if (!verified.ok()) {
    return Error::failedPrecondition(fmt::format("{}: signing certificate does not chain to {}: {}",
                                                 dir.string(), roots_path.filename().string(),
                                                 verified.error().message));
  }
  return ca;
}

Result<NewCa> createCa(const TrustDomain& trust_domain, KeyType key_type, Seconds root_ttl,
                       Seconds intermediate_ttl, SystemTime now) {
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr root_key, generateKey(key_type));
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr int_key, generateKey(key_type));
  MESHID_ASSIGN_OR_RETURN(auto root_signer, MemoryKeySigner::create(shareKey(root_key.get())));
  CaCertificateRequest root_req{.public_key = root_key.get(),
                                .trust_domain = trust_domain,
                                .common_name = "meshid Root CA",
                                .lifetime = root_ttl,
                                .now = now,
                                .path_length = std::nullopt};
  MESHID_ASSIGN_OR_RETURN(X509Ptr root, issueRootCertificate(root_req, *root_signer));
  CaCertificateRequest int_req{.public_key = int_key.get(),
                               .trust_domain = trust_domain,
                               .common_name = "meshid Intermediate CA",
                               .lifetime = intermediate_ttl,
                               .now = now,
                               .path_length = 0};
  MESHID_ASSIGN_OR_RETURN(X509Ptr inter,
                          issueIntermediateCertificate(int_req, root.get(), *root_signer));
  NewCa out;
  out.ca.signing_cert = shareX509(inter.get());
  out.ca.signing_key = std::move(int_key);
  out.ca.chain.push_back(std::move(inter));
  out.ca.roots.push_back(std::move(root));
  out.root_key = std::move(root_key);
  return out;
}

Result<void> writeIstioCacerts(const fs::path& dir, const CaMaterial& ca, bool overwrite) {
  const char* names[] = {kCaCertFile, kCaKeyFile, kCertChainFile, kRootCertFile};
  if (!overwrite) {
    for (const char* n : names) {
      if (pathExists(dir / n)) {
        return Error::alreadyExists(
            fmt::format("{} already exists (use --force to replace it)", (dir / n).string()));
      }
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Error::internal(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  MESHID_ASSIGN_OR_RETURN(std::string key_pem, privateKeyToPem(ca.signing_key.get()));
  auto wrote = writeFileAtomic(dir / kCaKeyFile, key_pem, kSecretFileMode);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  MESHID_RETURN_IF_ERROR(wrote);
  MESHID_RETURN_IF_ERROR(
      writeFileAtomic(dir / kCaCertFile, certificateToPem(ca.signing_cert.get()), kPublicFileMode));
  MESHID_RETURN_IF_ERROR(writeFileAtomic(dir / kCertChainFile,
                                         certificatesToPem(ca.chain) + certificatesToPem(ca.roots),
                                         kPublicFileMode));
  return writeFileAtomic(dir / kRootCertFile, certificatesToPem(ca.roots), kPublicFileMode);
}

}  // namespace meshid::pki
