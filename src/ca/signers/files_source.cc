#include "ca/signers/files_source.h"

#include <cstring>

#include <spdlog/spdlog.h>

#include "ca/signers/material.h"
#include "common/file_util.h"
#include "pki/ca_directory.h"
#include "pki/certificate.h"

namespace meshid::ca {

Result<std::shared_ptr<const SigningMaterial>> FilesSource::loadNow(
    const std::filesystem::path& dir, const Clock& clock) {
  MESHID_ASSIGN_OR_RETURN(pki::CaMaterial ca, pki::loadCaDirectory(dir, clock.now()));
  return materialFromCa(std::move(ca));
}

FilesSource::FilesSource(std::filesystem::path dir, LocalAuthority& authority, CaMetrics& metrics,
                         const Clock& clock, std::chrono::milliseconds poll_interval,
                         OnReload on_reload)
    : dir_(std::move(dir)),
      authority_(authority),
      metrics_(metrics),
      clock_(clock),
      poll_interval_(poll_interval),
      on_reload_(std::move(on_reload)) {
  last_fingerprint_ = fingerprint();
  if (poll_interval_.count() > 0) {
    poller_ = std::make_unique<PeriodicThread>(
        poll_interval_, PeriodicThread::First::kAfterInterval, [this] { (void)checkOnce(); });
  }
}

FilesSource::~FilesSource() = default;

// A hash over every file either layout uses (content, not mtime: a symlink
// swap keeps mtimes of the link itself).
std::string FilesSource::fingerprint() const {
  pki::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (const char* name :
       {pki::kCaCertFile, pki::kCaKeyFile, pki::kCertChainFile, pki::kRootCertFile,
        pki::kTlsCrtFile, pki::kTlsKeyFile, pki::kCaCrtFile}) {
    auto content = readFile(dir_ / name, pki::kMaxBundleBytes);
    std::string part = content.ok() ? *content : std::string("<absent>");
    EVP_DigestUpdate(ctx.get(), name, std::strlen(name));
    EVP_DigestUpdate(ctx.get(), part.data(), part.size());
    OPENSSL_cleanse(part.data(), part.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

bool FilesSource::checkOnce() {
  std::string fp = fingerprint();
  SystemTime now = clock_.now();
  bool retry = last_refused_ && now >= retry_at_;
  if (fp == last_fingerprint_ && !retry) {
    return false;
  }
  last_fingerprint_ = fp;
  auto loaded = loadNow(dir_, clock_);
  last_refused_ = !loaded.ok();
  if (!loaded.ok()) {
    retry_at_ = now + kRetryRefused;
    metrics_.signerReload(false);
    spdlog::error(
        "plugged-in CA files refused, still signing with the previous set dir={} error={}",
        dir_.string(), loaded.error().message);
    return false;
  }
  authority_.replace(*loaded);
  metrics_.signerReload(true);
  spdlog::info("plugged-in CA files reloaded dir={} subject={} not_after={}", dir_.string(),
               pki::subjectString((*loaded)->cert.get()),
               toUnixSeconds(pki::notAfter((*loaded)->cert.get())));
  if (on_reload_)
    on_reload_(*loaded);
  return true;
}

}  // namespace meshid::ca
