#include "cli/inputs.h"

#include <cstdlib>

#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/key.h"

namespace meshid::cli {
namespace {

constexpr size_t kMaxKeyBytes = 64 * 1024;
constexpr const char* kPassphraseEnv = "MESHID_KEY_PASSPHRASE";

std::string passphrase() {
  const char* p = std::getenv(kPassphraseEnv);
  return p ? p : "";
}

}  // namespace

Result<std::string> readInput(const std::string& path_or_dash, size_t max_bytes) {
  if (path_or_dash == "-") {
    return readStdin(max_bytes);
  }
  return readFile(path_or_dash, max_bytes);
}

Result<std::vector<pki::X509Ptr>> readCertificatesFile(const std::string& path) {
  MESHID_ASSIGN_OR_RETURN(std::string data, readInput(path, pki::kMaxBundleBytes));
  auto certs = pki::parseCertificates(data);
  if (!certs.ok()) {
    return certs.error().wrap(path == "-" ? "standard input" : path);
  }
  return certs;
}

Result<pki::EvpPkeyPtr> readPrivateKeyFile(const std::string& path) {
  MESHID_ASSIGN_OR_RETURN(std::string pem, readInput(path, kMaxKeyBytes));
  auto key = pki::parsePrivateKeyPem(pem, passphrase());
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!key.ok()) {
    return key.error().wrap(path);
  }
  return key;
}

Result<void> writePrivateKeyFile(const std::string& path, const EVP_PKEY* key) {
  MESHID_ASSIGN_OR_RETURN(std::string pem, pki::privateKeyToPem(key, passphrase()));
  auto r = writeFileAtomic(path, pem, kSecretFileMode);
  OPENSSL_cleanse(pem.data(), pem.size());
  return r;
}

}  // namespace meshid::cli
