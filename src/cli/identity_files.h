// The files a workload identity is written as: cert-chain.pem (leaf +
// intermediates), key.pem (0600), root-cert.pem (bundle). Istio's agent writes
// the same names (OUTPUT_CERTS), so tools that read those read ours.
#pragma once

#include <filesystem>
#include <string>

#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::cli {

inline constexpr const char* kLeafChainFile = "cert-chain.pem";
inline constexpr const char* kLeafKeyFile = "key.pem";
inline constexpr const char* kBundleFile = "root-cert.pem";

// ALREADY_EXISTS (naming the file) unless force, when any of them exists.
Result<void> checkIdentityFilesAbsent(const std::filesystem::path& out, bool force);

// Writes chain and bundle; the key when given, else removes a stale key.pem
// (the key stays with whoever made the CSR and must not be mismatched).
Result<void> writeIdentityFiles(const std::filesystem::path& out, const std::string& chain_pem,
                                const EVP_PKEY* key, const std::string& bundle_pem);

}  // namespace meshid::cli
