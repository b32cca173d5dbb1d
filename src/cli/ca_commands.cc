// `meshid ca init` and `meshid ca intermediate`: make the CA files a mesh
// starts from, in Istio's cacerts layout.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/inputs.h"
#include "cli/output.h"
#include "common/duration.h"
#include "common/file_util.h"
#include "pki/ca_directory.h"
#include "pki/certificate.h"
#include "pki/issuance.h"
#include "pki/key.h"
#include "pki/memory_key_signer.h"

namespace meshid::cli {
namespace {

namespace fs = std::filesystem;

struct InitOptions {
  std::string trust_domain;
  std::string out;
  std::string key_type = "ec-p256";
  std::string root_ttl = "3650d";
  std::string intermediate_ttl = "365d";
  std::string root_key_out;  // default <out>/root/root-key.pem
  bool force = false;
  bool json = false;
};

struct IntermediateOptions {
  std::string root_cert;
  std::string root_key;
  std::string out;
  std::string trust_domain;  // default: from the root's spiffe:// URI SAN
  std::string common_name = "meshid Intermediate CA";
  std::string key_type = "ec-p256";
  std::string ttl = "365d";
  int path_length = 0;
  bool force = false;
  bool json = false;
};

// Everything a command printed about the CA it made.
void printCa(Context& ctx, const pki::CaMaterial& ca, const fs::path& out,
             const std::string& headline, const std::string& root_key_note, bool json) {
  SystemTime now = ctx.clock.now();
  if (json) {
    nlohmann::json j;
    j["directory"] = out.string();
    j["layout"] = pki::caLayoutName(ca.layout);
    j["intermediate"] = certificateJson(pki::describeCertificate(ca.signing_cert.get()), now);
    j["roots"] = nlohmann::json::array();
    for (const auto& r : ca.roots) {
      j["roots"].push_back(certificateJson(pki::describeCertificate(r.get()), now));
    }
    j["files"] = {pki::kCaCertFile, pki::kCaKeyFile, pki::kCertChainFile, pki::kRootCertFile};
    if (!root_key_note.empty())
      j["root_key"] = root_key_note;
    ctx.out << j.dump(2) << "\n";
    return;
  }
  ctx.out << headline << "\n";
  for (const auto& r : ca.roots) {
    auto info = pki::describeCertificate(r.get());
    ctx.out << fmt::format("  root          {}  {}  {}\n", info.subject, info.key,
                           validityRemark(info, now));
  }
  auto info = pki::describeCertificate(ca.signing_cert.get());
  ctx.out << fmt::format("  intermediate  {}  {}  {}\n", info.subject, info.key,
                         validityRemark(info, now));
  ctx.out << fmt::format("  files         {}/{{{}, {} (0600), {}, {}}}\n", out.string(),
                         pki::kCaCertFile, pki::kCaKeyFile, pki::kCertChainFile,
                         pki::kRootCertFile);
  if (!root_key_note.empty()) {
    ctx.out << fmt::format(
        "  root key      {} (0600): keep it offline; it is not part of cacerts\n", root_key_note);
  }
}

Result<pki::TrustDomain> trustDomainOfRoot(const X509* root) {
  for (const auto& uri : pki::uriSans(root)) {
    auto id = pki::SpiffeId::parse(uri);
    if (id.ok()) {
      return id->trustDomain();
    }
  }
  return Error::invalidArgument(
      "the root certificate carries no spiffe:// URI SAN: pass --trust-domain");
}

Result<void> runInit(Context& ctx, const InitOptions& o) {
  MESHID_ASSIGN_OR_RETURN(pki::TrustDomain td, pki::TrustDomain::parse(o.trust_domain));
  MESHID_ASSIGN_OR_RETURN(pki::KeyType key_type, pki::parseKeyType(o.key_type));
  MESHID_ASSIGN_OR_RETURN(Seconds root_ttl, parseDuration(o.root_ttl));
  MESHID_ASSIGN_OR_RETURN(Seconds int_ttl, parseDuration(o.intermediate_ttl));
  fs::path out(o.out);
  fs::path root_key_path =
      o.root_key_out.empty() ? out / "root" / "root-key.pem" : fs::path(o.root_key_out);
  // Beside a default-placed root key goes a copy of the root certificate; a
  // key placed explicitly (a vault folder) gets nothing else written near it.
  fs::path root_cert_path =
      o.root_key_out.empty() ? root_key_path.parent_path() / "root-cert.pem" : fs::path();
  // Check every target before writing anything: a refused run leaves nothing
  // behind, and the root key is written first, so no CA exists without it.
  std::vector<fs::path> targets{root_key_path};
  if (!root_cert_path.empty())
    targets.push_back(root_cert_path);
  for (const char* n :
       {pki::kCaCertFile, pki::kCaKeyFile, pki::kCertChainFile, pki::kRootCertFile}) {
    targets.push_back(out / n);
  }
  if (!o.force) {
    for (const auto& t : targets) {
      if (fs::exists(t)) {
        return Error::alreadyExists(
            fmt::format("{} already exists (use --force to replace it)", t.string()));
      }
    }
  }
  MESHID_ASSIGN_OR_RETURN(pki::NewCa created,
                          pki::createCa(td, key_type, root_ttl, int_ttl, ctx.clock.now()));
  const pki::CaMaterial& ca = created.ca;
  std::error_code ec;
  for (const fs::path& dir : {root_key_path.parent_path(), out}) {
    if (!dir.empty())
      fs::create_directories(dir, ec);
    if (ec) {
      return Error::internal(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    }
  }
  MESHID_RETURN_IF_ERROR(writePrivateKeyFile(root_key_path, created.root_key.get()));
  if (!root_cert_path.empty()) {
    MESHID_RETURN_IF_ERROR(writeFileAtomic(
        root_cert_path, pki::certificateToPem(ca.roots.front().get()), kPublicFileMode));
  }
  MESHID_RETURN_IF_ERROR(pki::writeIstioCacerts(out, ca, /*overwrite=*/true));
  printCa(ctx, ca, out,
          fmt::format("created a CA for trust domain {} in {} (Istio cacerts layout)", td.name(),
                      out.string()),
          root_key_path.string(), o.json);
  return okResult();
}

Result<void> runIntermediate(Context& ctx, const IntermediateOptions& o) {
  MESHID_ASSIGN_OR_RETURN(auto root_certs, readCertificatesFile(o.root_cert));
  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr root_key, readPrivateKeyFile(o.root_key));
  MESHID_ASSIGN_OR_RETURN(pki::KeyType key_type, pki::parseKeyType(o.key_type));
  MESHID_ASSIGN_OR_RETURN(Seconds ttl, parseDuration(o.ttl));
  if (o.path_length < 0) {
    return Error::invalidArgument("--path-length must not be negative");
  }
  X509* root = root_certs.front().get();
  Result<pki::TrustDomain> td =
      o.trust_domain.empty() ? trustDomainOfRoot(root) : pki::TrustDomain::parse(o.trust_domain);
  if (!td.ok()) {
    return td.error();
  }
  MESHID_ASSIGN_OR_RETURN(auto root_signer, pki::MemoryKeySigner::create(std::move(root_key)));
  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr int_key, pki::generateKey(key_type));
  pki::CaCertificateRequest req{.public_key = int_key.get(),
                                .trust_domain = *td,
                                .common_name = o.common_name,
                                .lifetime = ttl,
                                .now = ctx.clock.now(),
                                .path_length = o.path_length};
  MESHID_ASSIGN_OR_RETURN(pki::X509Ptr inter,
                          pki::issueIntermediateCertificate(req, root, *root_signer));
  pki::CaMaterial ca;
  ca.signing_cert = pki::shareX509(inter.get());
  ca.signing_key = std::move(int_key);
  ca.chain.push_back(std::move(inter));
  // The root file may carry the whole bundle (several roots during a rotation).
  for (auto& r : root_certs) {
    if (pki::isSelfSigned(r.get())) {
      ca.roots.push_back(std::move(r));
    } else {
      ca.chain.push_back(std::move(r));  // the signer is itself an intermediate
    }
  }
  if (ca.roots.empty()) {
    return Error::invalidArgument(fmt::format(
        "{} holds no self-signed root; pass the root certificate (or the bundle that holds it)",
        o.root_cert));
  }
  MESHID_RETURN_IF_ERROR(pki::writeIstioCacerts(o.out, ca, o.force));
  printCa(ctx, ca, o.out,
          fmt::format("created an intermediate CA for trust domain {} in {}", td->name(), o.out),
          "", o.json);
  return okResult();
}

}  // namespace

void addCaCommands(CLI::App& app, Context& ctx) {
  CLI::App* ca = app.add_subcommand("ca", "Make and manage certificate authorities");
  ca->require_subcommand(1);

  auto init = std::make_shared<InitOptions>();
  CLI::App* c =
      ca->add_subcommand("init", "Create a root and an intermediate CA in Istio's cacerts layout");
  c->add_option("--trust-domain", init->trust_domain, "Trust domain, e.g. example.org")->required();
  c->add_option("--out", init->out,
                "Directory for ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem")
      ->required();
  c->add_option("--key-type", init->key_type,
                "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519")
      ->capture_default_str();
  c->add_option("--root-ttl", init->root_ttl, "Root lifetime (e.g. 3650d)")->capture_default_str();
  c->add_option("--intermediate-ttl", init->intermediate_ttl, "Intermediate lifetime")
      ->capture_default_str();
  c->add_option("--root-key-out", init->root_key_out,
                "Where to write the root key (default: <out>/root/root-key.pem)");
  c->add_flag("--force", init->force, "Replace existing files");
  c->add_flag("--json", init->json, "Print JSON");
  c->callback([&ctx, init] {
    auto r = runInit(ctx, *init);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), init->json);
  });

  auto inter = std::make_shared<IntermediateOptions>();
  CLI::App* i = ca->add_subcommand(
      "intermediate", "Create another intermediate CA (another cluster) under an existing root");
  i->add_option("--root-cert", inter->root_cert, "Root certificate PEM")->required();
  i->add_option("--root-key", inter->root_key,
                "Root private key PEM (MESHID_KEY_PASSPHRASE decrypts it)")
      ->required();
  i->add_option("--out", inter->out, "Directory for the cacerts files")->required();
  i->add_option("--trust-domain", inter->trust_domain,
                "Trust domain (default: from the root's spiffe:// URI SAN)");
  i->add_option("--common-name", inter->common_name, "Subject CN")->capture_default_str();
  i->add_option("--key-type", inter->key_type, "Key type of the new intermediate")
      ->capture_default_str();
  i->add_option("--ttl", inter->ttl, "Lifetime (clamped to the root's)")->capture_default_str();
  i->add_option("--path-length", inter->path_length, "CAs allowed below this one")
      ->capture_default_str();
  i->add_flag("--force", inter->force, "Replace existing files");
  i->add_flag("--json", inter->json, "Print JSON");
  i->callback([&ctx, inter] {
    auto r = runIntermediate(ctx, *inter);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), inter->json);
  });
}

}  // namespace meshid::cli
