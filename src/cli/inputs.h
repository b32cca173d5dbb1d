// Reading what commands are given: files or "-" for standard input.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::cli {

Result<std::string> readInput(const std::string& path_or_dash, size_t max_bytes);
Result<std::vector<pki::X509Ptr>> readCertificatesFile(const std::string& path);
// The passphrase comes from the environment variable MESHID_KEY_PASSPHRASE when
// set, never from a flag (it would show in `ps`).
Result<pki::EvpPkeyPtr> readPrivateKeyFile(const std::string& path);
// Writes a private key PEM with mode 0600, encrypted when MESHID_KEY_PASSPHRASE is set.
Result<void> writePrivateKeyFile(const std::string& path, const EVP_PKEY* key);

}  // namespace meshid::cli
