#include "pki/key.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <array>
#include <cstring>

#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

constexpr size_t kMaxKeyPemBytes = 64 * 1024;
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;  // larger keys make every verify a CPU sink

struct KeyTypeSpelling {
  std::string_view name;
  KeyType type;
};
constexpr std::array<KeyTypeSpelling, 11> kSpellings{{
    {"ec-p256", KeyType::kEcP256},
    {"p256", KeyType::kEcP256},
    {"ecdsa-p256", KeyType::kEcP256},
    {"ec-p384", KeyType::kEcP384},
    {"p384", KeyType::kEcP384},
    {"ecdsa-p384", KeyType::kEcP384},
    {"rsa-2048", KeyType::kRsa2048},
    {"rsa-3072", KeyType::kRsa3072},
    {"rsa-4096", KeyType::kRsa4096},
    {"rsa2048", KeyType::kRsa2048},
    {"ed25519", KeyType::kEd25519},
}};

// OpenSSL names an explicit-parameter key after the named curve its parameters
// match, so only the encoding tells it apart.
bool hasExplicitCurve(const EVP_PKEY* key) {
  char encoding[32] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding, sizeof encoding,
                                     &len) != 1) {
    drainOpensslErrors();
    return false;
  }
  return std::string_view(encoding, len) == OSSL_PKEY_EC_ENCODING_EXPLICIT;
}

// Returns -1 (refuse) when no passphrase was given, so OpenSSL never falls back
// to prompting on a terminal.
int passphraseCallback(char* buf, int size, int /*rwflag*/, void* user) {
  auto* pass = static_cast<std::string_view*>(user);
  if (pass == nullptr || pass->empty() || size <= 0 || pass->size() > static_cast<size_t>(size)) {
    return -1;
  }
  std::memcpy(buf, pass->data(), pass->size());
  return static_cast<int>(pass->size());
}

}  // namespace

std::string ecGroupName(const EVP_PKEY* key) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) !=
      1) {
    drainOpensslErrors();
    return {};
  }
  return std::string(name, len);
}

Result<KeyType> parseKeyType(std::string_view name) {
  for (const auto& s : kSpellings) {
    if (s.name == name) {
      return s.type;
    }
  }
  return Error::invalidArgument(fmt::format(
      "unknown key type \"{}\": use ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519",
      name));
}

std::string_view keyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return "ec-p256";
    case KeyType::kEcP384:
      return "ec-p384";
    case KeyType::kRsa2048:
      return "rsa-2048";
    case KeyType::kRsa3072:
      return "rsa-3072";
    case KeyType::kRsa4096:
      return "rsa-4096";
    case KeyType::kEd25519:
      return "ed25519";
  }
  return "unknown";
}

Result<EvpPkeyPtr> generateKey(KeyType type) {
  EVP_PKEY* key = nullptr;
  switch (type) {
    case KeyType::kEcP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyType::kRsa2048:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
      break;
    case KeyType::kRsa3072:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{3072});
      break;
    case KeyType::kRsa4096:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{4096});
      break;
    case KeyType::kEd25519:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
  }
  if (key == nullptr) {
    return opensslError(Code::kInternal, fmt::format("cannot generate {} key", keyTypeName(type)));
  }
  return EvpPkeyPtr(key);
}

Result<void> checkRsaBits(int bits) {
  if (bits < kMinRsaBits) {
    return Error::invalidArgument(fmt::format(
        "RSA key of {} bits is too weak: at least {} bits are required", bits, kMinRsaBits));
  }
  if (bits > kMaxRsaBits) {
    return Error::invalidArgument(
        fmt::format("RSA key of {} bits is larger than the {}-bit limit", bits, kMaxRsaBits));
  }
  return okResult();
}

Result<void> checkKeyStrength(const EVP_PKEY* key) {
  if (key == nullptr) {
    return Error::invalidArgument("no key");
  }
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return checkRsaBits(EVP_PKEY_get_bits(key));
    case EVP_PKEY_EC: {
      std::string group = ecGroupName(key);
      if (group.empty() || hasExplicitCurve(key)) {
        return Error::invalidArgument(
            "EC key with explicit curve parameters is not accepted: use a named curve (P-256, "
            "P-384 or P-521)");
      }
      if (group == "prime256v1" || group == "P-256" || group == "secp384r1" || group == "P-384" ||
          group == "secp521r1" || group == "P-521") {
        return okResult();
      }
      return Error::invalidArgument(
          fmt::format("EC key on curve {} is not accepted: use P-256, P-384 or P-521", group));
    }
    case EVP_PKEY_ED25519:
      return okResult();
    default:
      return Error::invalidArgument(
          fmt::format("key algorithm {} is not accepted: use ECDSA, RSA or Ed25519",
                      OBJ_nid2sn(EVP_PKEY_get_base_id(key))));
  }
}

std::string describeKey(const EVP_PKEY* key) {
  if (key == nullptr) {
    return "none";
  }
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return fmt::format("RSA {}", EVP_PKEY_get_bits(key));
    case EVP_PKEY_EC: {
      std::string g = ecGroupName(key);
      if (g == "prime256v1")
        return "ECDSA P-256";
      if (g == "secp384r1")
        return "ECDSA P-384";
      if (g == "secp521r1")
        return "ECDSA P-521";
      return fmt::format("ECDSA {}", g.empty() ? "explicit-curve" : g);
    }
    case EVP_PKEY_ED25519:
      return "Ed25519";
    default: {
      const char* sn = OBJ_nid2sn(EVP_PKEY_get_base_id(key));
      return sn ? sn : "unknown";
    }
  }
}

const EVP_MD* signatureDigestFor(const EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
    return nullptr;
  }
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    int bits = EVP_PKEY_get_bits(key);
    if (bits > 384)
      return EVP_sha512();
    if (bits > 256)
      return EVP_sha384();
  }
  return EVP_sha256();
}

namespace {

// Moves a memory BIO's bytes into a string and wipes the BIO's copy: the
// bytes are key material.
std::string takeSecretBytes(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  return out;
}

}  // namespace

Result<std::string> privateKeyToDer(const EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (i2d_PKCS8PrivateKey_bio(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return opensslError(Code::kInternal, "cannot encode private key");
  }
  return takeSecretBytes(bio.get());
}

Result<std::string> privateKeyToPem(const EVP_PKEY* key, std::string_view passphrase) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  int ok = 0;
  if (passphrase.empty()) {
    ok = PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  } else {
    ok = PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_256_cbc(), passphrase.data(),
                                       static_cast<int>(passphrase.size()), nullptr, nullptr);
  }
  if (ok != 1) {
    return opensslError(Code::kInternal, "cannot encode private key");
  }
  return takeSecretBytes(bio.get());
}

Result<EvpPkeyPtr> parsePrivateKeyPem(std::string_view pem, std::string_view passphrase) {
  if (pem.size() > kMaxKeyPemBytes) {
    return Error::invalidArgument(
        fmt::format("private key is larger than the limit of {} bytes", kMaxKeyPemBytes));
  }
  if (pem.find("-----BEGIN") == std::string_view::npos ||
      pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return Error::invalidArgument("no PEM private key found");
  }
  bool encrypted = pem.find("ENCRYPTED PRIVATE KEY") != std::string_view::npos ||
                   pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos;
  if (encrypted && passphrase.empty()) {
    return Error::invalidArgument("private key is encrypted: a passphrase is required");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::string_view pass = passphrase;
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, passphraseCallback, &pass);
  if (key == nullptr) {
    return opensslError(Code::kInvalidArgument,
                        encrypted ? "cannot decrypt private key: wrong passphrase or damaged key"
                                  : "cannot parse private key");
  }
  EvpPkeyPtr owned(key);
  MESHID_RETURN_IF_ERROR(checkKeyStrength(owned.get()));
  return owned;
}

Result<std::string> publicKeyToPem(const EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return opensslError(Code::kInternal, "cannot encode public key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

bool samePublicKey(const EVP_PKEY* a, const EVP_PKEY* b) {
  // A key that did not decode (X509_get0_pubkey of a bad point) arrives as
  // nullptr with its error queued: drained here too, not left to whatever
  // OpenSSL call reports an error next (fuzz_sds_response found it).
  int r = a != nullptr && b != nullptr ? EVP_PKEY_eq(a, b) : 0;
  drainOpensslErrors();
  return r == 1;
}

}  // namespace meshid::pki
