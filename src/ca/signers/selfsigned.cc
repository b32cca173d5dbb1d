#include "ca/signers/selfsigned.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <system_error>

#include "ca/signers/material.h"
#include "common/file_util.h"
#include "pki/ca_directory.h"
#include "pki/certificate.h"
#include "pki/issuance.h"
#include "pki/memory_key_signer.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
constexpr size_t kMaxKeyBytes = 64 * 1024;

fs::path rootKeyPath(const SelfSignedConfig& c) {
  return c.dir / "root" / "root-key.pem";
}

Result<void> writeRootKey(const SelfSignedConfig& c, const EVP_PKEY* key) {
  std::error_code ec;
  fs::create_directories(rootKeyPath(c).parent_path(), ec);
  fs::permissions(c.dir, fs::perms::owner_all, ec);
  MESHID_ASSIGN_OR_RETURN(std::string pem, pki::privateKeyToPem(key));
  auto r = writeFileAtomic(rootKeyPath(c), pem, kSecretFileMode);
  OPENSSL_cleanse(pem.data(), pem.size());
  return r;
}

// A renewal is written whole into this folder first, marked complete, and
// only then renamed file by file into place. A crash before the mark leaves
// the old set untouched (the folder is dropped at the next start); a crash
// among the renames is finished at the next start. Writing over the live
// files directly could leave a new key beside the old certificate, a CA that
// no longer starts.
fs::path renewalDir(const SelfSignedConfig& c) {
  return c.dir / ".renewing";
}
constexpr const char* kRenewalComplete = "complete";

Result<void> moveRenewalIntoPlace(const SelfSignedConfig& c) {
  std::error_code ec;
  for (const char* name :
       {pki::kCaKeyFile, pki::kCaCertFile, pki::kCertChainFile, pki::kRootCertFile}) {
    fs::path from = renewalDir(c) / name;
    if (!fs::exists(from, ec))
      continue;  // moved before an interruption
    fs::rename(from, c.dir / name, ec);
    if (ec) {
      return Error::unavailable(
          fmt::format("cannot move renewed {} into place: {}", name, ec.message()));
    }
  }
  fs::remove_all(renewalDir(c), ec);
  return okResult();
}

Result<void> finishInterruptedRenewal(const SelfSignedConfig& c) {
  std::error_code ec;
  if (!fs::exists(renewalDir(c), ec))
    return okResult();
  if (fs::exists(renewalDir(c) / kRenewalComplete, ec)) {
    spdlog::warn("finishing an interrupted intermediate renewal dir={}", c.dir.string());
    return moveRenewalIntoPlace(c);
  }
  spdlog::warn("dropping an unfinished intermediate renewal dir={}", renewalDir(c).string());
  fs::remove_all(renewalDir(c), ec);
  if (ec) {
    return Error::unavailable(
        fmt::format("cannot remove {}: {}", renewalDir(c).string(), ec.message()));
  }
  return okResult();
}

// A new intermediate under the kept root, put in place of the old cacerts
// files (through renewalDir).
Result<pki::CaMaterial> renewIntermediate(const SelfSignedConfig& c, pki::CaMaterial old,
                                          SystemTime now) {
  MESHID_ASSIGN_OR_RETURN(std::string pem, readFile(rootKeyPath(c), kMaxKeyBytes));
  auto root_key = pki::parsePrivateKeyPem(pem);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!root_key.ok())
    return root_key.error().wrap(rootKeyPath(c).string());
  MESHID_ASSIGN_OR_RETURN(auto root_signer,
                          pki::MemoryKeySigner::create(std::move(root_key).value()));
  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr key, pki::generateKey(c.key_type));
  pki::CaCertificateRequest req{.public_key = key.get(),
                                .trust_domain = c.trust_domain,
                                .common_name = "meshid Intermediate CA",
                                .lifetime = c.intermediate_ttl,
                                .now = now,
                                .path_length = 0};
  MESHID_ASSIGN_OR_RETURN(pki::X509Ptr inter, pki::issueIntermediateCertificate(
                                                  req, old.roots.front().get(), *root_signer));
  pki::CaMaterial fresh;
  fresh.signing_cert = pki::shareX509(inter.get());
  fresh.signing_key = std::move(key);
  fresh.chain.push_back(std::move(inter));
  fresh.roots = std::move(old.roots);
  // finishInterruptedRenewal ran at this start: renewalDir does not exist.
  std::error_code ec;
  MESHID_RETURN_IF_ERROR(pki::writeIstioCacerts(renewalDir(c), fresh, /*overwrite=*/false));
  fs::permissions(renewalDir(c), fs::perms::owner_all, ec);
  MESHID_RETURN_IF_ERROR(writeFileAtomic(renewalDir(c) / kRenewalComplete, "", kPublicFileMode));
  MESHID_RETURN_IF_ERROR(moveRenewalIntoPlace(c));
  return fresh;
}

}  // namespace

Result<std::shared_ptr<const SigningMaterial>> loadOrCreateSelfSigned(
    const SelfSignedConfig& config, const Clock& clock) {
  SystemTime now = clock.now();
  std::error_code ec;
  MESHID_RETURN_IF_ERROR(finishInterruptedRenewal(config));
  if (!fs::exists(config.dir / pki::kCaCertFile, ec)) {
    // A missing ca-cert.pem beside other CA files is lost state, not a first
    // start: making a new CA would overwrite the root key of a root that may
    // already be trusted everywhere.
    for (const fs::path& p : {rootKeyPath(config), config.dir / pki::kRootCertFile,
                              config.dir / pki::kCaKeyFile, config.dir / pki::kCertChainFile}) {
      if (fs::exists(p, ec)) {
        return Error::failedPrecondition(fmt::format(
            "{} is missing but {} exists: refusing to make a new CA over existing state",
            (config.dir / pki::kCaCertFile).string(), p.string()));
      }
    }
    MESHID_ASSIGN_OR_RETURN(pki::NewCa created,
                            pki::createCa(config.trust_domain, config.key_type, config.root_ttl,
                                          config.intermediate_ttl, now));
    fs::create_directories(config.dir, ec);
    fs::permissions(config.dir, fs::perms::owner_all, ec);
    MESHID_RETURN_IF_ERROR(writeRootKey(config, created.root_key.get()));
    MESHID_RETURN_IF_ERROR(pki::writeIstioCacerts(config.dir, created.ca, /*overwrite=*/false));
    spdlog::info("self-signed CA created dir={} trust_domain={} root_not_after={}",
                 config.dir.string(), config.trust_domain.name(),
                 toUnixSeconds(pki::notAfter(created.ca.roots.front().get())));
    return materialFromCa(std::move(created.ca));
  }
  // An expired intermediate no longer verifies: check the kept files at a
  // moment inside its validity to tell "expired, renew it" from "broken".
  SystemTime check_at = now;
  if (auto pem = readFile(config.dir / pki::kCaCertFile, pki::kMaxBundleBytes); pem.ok()) {
    if (auto certs = pki::parseCertificatesPem(*pem);
        certs.ok() && pki::notAfter(certs->front().get()) <= now) {
      check_at = pki::notBefore(certs->front().get());
    }
  }
  auto loaded = pki::loadCaDirectory(config.dir, check_at);
  if (!loaded.ok()) {
    return loaded.error().wrap("self-signed CA state");
  }
  pki::CaMaterial ca = std::move(loaded).value();
  SystemTime nb = pki::notBefore(ca.signing_cert.get()), na = pki::notAfter(ca.signing_cert.get());
  if (na - now < (na - nb) / 3) {
    spdlog::info("self-signed intermediate near expiry, making a new one not_after={}",
                 toUnixSeconds(na));
    MESHID_ASSIGN_OR_RETURN(ca, renewIntermediate(config, std::move(ca), now));
  }
  return materialFromCa(std::move(ca));
}

}  // namespace meshid::ca
