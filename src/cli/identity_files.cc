#include "cli/identity_files.h"

#include <fmt/format.h>

#include "cli/inputs.h"
#include "common/file_util.h"

namespace meshid::cli {

namespace fs = std::filesystem;

Result<void> checkIdentityFilesAbsent(const fs::path& out, bool force) {
  if (force)
    return okResult();
  for (const char* n : {kLeafChainFile, kLeafKeyFile, kBundleFile}) {
    if (fs::exists(out / n)) {
      return Error::alreadyExists(
          fmt::format("{} already exists (use --force to replace it)", (out / n).string()));
    }
  }
  return okResult();
}

Result<void> writeIdentityFiles(const fs::path& out, const std::string& chain_pem,
                                const EVP_PKEY* key, const std::string& bundle_pem) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    return Error::internal(fmt::format("cannot create {}: {}", out.string(), ec.message()));
  }
  if (key != nullptr) {
    MESHID_RETURN_IF_ERROR(writePrivateKeyFile(out / kLeafKeyFile, key));
  } else {
    fs::remove(out / kLeafKeyFile, ec);
  }
  MESHID_RETURN_IF_ERROR(writeFileAtomic(out / kLeafChainFile, chain_pem, kPublicFileMode));
  return writeFileAtomic(out / kBundleFile, bundle_pem, kPublicFileMode);
}

}  // namespace meshid::cli
