// A directory laid out the way the kubelet mounts a Secret: every file is a
// symlink through `..data`, which points at a timestamped folder and is
// swapped by one rename on update (kubelet's AtomicWriter). Shared by the CA
// unit and integration tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "pki/certificate.h"
#include "pki/key.h"
#include "pki/ossl.h"
#include "unit/common/test_util.h"

namespace meshid::testing {

class SecretVolume {
 public:
  explicit SecretVolume(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }

  const std::filesystem::path& path() const { return dir_; }

  // Writes files into a fresh versioned folder, points `..data` at it with one
  // rename, adds the top-level links the first time, and removes the previous
  // folder, as the kubelet does.
  void publish(const std::map<std::string, std::string>& files) {
    namespace fs = std::filesystem;
    std::string version = "..2026_11_25_00_00_00." + std::to_string(++generation_);
    fs::path folder = dir_ / version;
    fs::create_directory(folder);
    for (const auto& [name, content] : files) {
      std::ofstream out(folder / name, std::ios::binary);
      out << content;
      if (!out)
        throw std::runtime_error("cannot write " + (folder / name).string());
    }
    fs::path tmp = dir_ / "..data_tmp";
    fs::remove(tmp);
    fs::create_symlink(version, tmp);
    fs::rename(tmp, dir_ / "..data");  // atomic: readers see the old set or the new
    for (const auto& [name, content] : files) {
      if (!fs::is_symlink(dir_ / name))
        fs::create_symlink(fs::path("..data") / name, dir_ / name);
    }
    if (!previous_.empty())
      fs::remove_all(dir_ / previous_);
    previous_ = version;
  }

 private:
  std::filesystem::path dir_;
  int generation_ = 0;
  std::string previous_;
};

// Istio's cacerts files for a signing certificate, its key, the chain above
// it (without roots) and the roots.
inline std::map<std::string, std::string> cacertsFiles(const X509* signing_cert,
                                                       const EVP_PKEY* signing_key,
                                                       const std::vector<const X509*>& chain,
                                                       const std::vector<const X509*>& roots) {
  std::string chain_pem, roots_pem;
  for (const X509* c : chain)
    chain_pem += pki::certificateToPem(c);
  for (const X509* r : roots)
    roots_pem += pki::certificateToPem(r);
  return {{"ca-cert.pem", pki::certificateToPem(signing_cert)},
          {"ca-key.pem", orThrow(pki::privateKeyToPem(signing_key), "key pem")},
          {"cert-chain.pem", chain_pem + roots_pem},
          {"root-cert.pem", roots_pem}};
}

}  // namespace meshid::testing
