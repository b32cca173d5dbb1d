// Private keys: generate, classify, refuse weak ones, PEM in and out.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::pki {

enum class KeyType { kEcP256, kEcP384, kRsa2048, kRsa3072, kRsa4096, kEd25519 };

// Accepts "ec-p256" (also "p256", "ecdsa-p256"), "ec-p384", "rsa-2048",
// "rsa-3072", "rsa-4096", "ed25519".
Result<KeyType> parseKeyType(std::string_view name);
std::string_view keyTypeName(KeyType type);  // the canonical spelling, "ec-p256"

Result<EvpPkeyPtr> generateKey(KeyType type);

// Refuses what meshid never signs for or with: RSA below 2048 or above 8192
// bits, EC keys on curves other than P-256/P-384/P-521 (including explicit
// parameters), and every other algorithm but Ed25519.
Result<void> checkKeyStrength(const EVP_PKEY* key);

// checkKeyStrength's rule for an RSA modulus of `bits` bits.
Result<void> checkRsaBits(int bits);

// The OpenSSL group name of an EC key ("prime256v1"), empty for other keys.
std::string ecGroupName(const EVP_PKEY* key);

// "ECDSA P-256", "RSA 2048", "Ed25519".
std::string describeKey(const EVP_PKEY* key);

// The digest certificates signed by this key use: SHA-256 for P-256 and RSA,
// SHA-384 for P-384, SHA-512 for P-521, none (nullptr) for Ed25519.
const EVP_MD* signatureDigestFor(const EVP_PKEY* key);

// Unencrypted PKCS#8 DER (the SPIFFE Workload API's x509_svid_key).
Result<std::string> privateKeyToDer(const EVP_PKEY* key);

// PKCS#8 PEM; with a passphrase, encrypted (PBES2, AES-256-CBC).
Result<std::string> privateKeyToPem(const EVP_PKEY* key, std::string_view passphrase = {});

// PKCS#8, SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") PEM; an
// encrypted key needs its passphrase. The key must pass checkKeyStrength.
Result<EvpPkeyPtr> parsePrivateKeyPem(std::string_view pem, std::string_view passphrase = {});

// SubjectPublicKeyInfo PEM.
Result<std::string> publicKeyToPem(const EVP_PKEY* key);

// True when both hold the same public key.
bool samePublicKey(const EVP_PKEY* a, const EVP_PKEY* b);

}  // namespace meshid::pki
