#include "proxy/snapshot_store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "common/duration.h"

namespace meshid::proxy {
namespace {

// Length-prefixed so that moving bytes between the parts changes the digest.
std::string digest(std::string_view a, std::string_view b, std::string_view c) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (auto part : {a, b, c}) {
    uint64_t n = part.size();
    EVP_DigestUpdate(ctx.get(), &n, sizeof n);
    EVP_DigestUpdate(ctx.get(), part.data(), part.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

}  // namespace

Result<bool> SnapshotStore::offer(std::string_view chain_pem, std::string_view key_pem,
                                  std::string_view bundle_pem) {
  std::lock_guard lock(mu_);
  std::string fp = digest(chain_pem, key_pem, bundle_pem);
  if (fp == fingerprint_)
    return false;
  MESHID_ASSIGN_OR_RETURN(auto snap, buildSnapshot(config_, chain_pem, key_pem, bundle_pem, clock_,
                                                   generation_ + 1, new_session_));
  fingerprint_ = fp;
  ++generation_;
  current_.store(snap);
  spdlog::info("certificate loaded serial={} not_after={} generation={}", snap->serial_hex,
               formatRfc3339(snap->not_after), generation_);
  return true;
}

}  // namespace meshid::proxy
