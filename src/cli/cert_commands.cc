// `meshid cert issue|inspect|verify`: offline issuance and the tools an
// operator uses to see what a file or a live endpoint holds.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/identity_files.h"
#include "cli/inputs.h"
#include "cli/output.h"
#include "common/duration.h"
#include "common/file_util.h"
#include "pki/ca_directory.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/csr.h"
#include "pki/issuance.h"
#include "pki/key.h"
#include "pki/memory_key_signer.h"
#include "pki/public_key.h"
#include "pki/tls_probe.h"

namespace meshid::cli {
namespace {

namespace fs = std::filesystem;

struct IssueOptions {
  std::string ca_dir;
  std::string spiffe_id;
  std::string ttl = "1h";
  std::string out;
  std::string key_type = "ec-p256";
  std::string csr;  // sign this CSR instead of generating a key
  bool force = false;
  bool json = false;
};

struct InspectOptions {
  std::string file;
  std::string connect;
  std::string cert;
  std::string key;
  std::string roots;
  std::string server_name;
  std::string spiffe_id;
  int timeout_ms = 5000;
  bool json = false;
};

struct VerifyOptions {
  std::string roots;
  std::string chain;
  std::string leaf;
  std::string spiffe_id;
  std::string key;
  std::string at;
  bool json = false;
};

Result<void> runIssue(Context& ctx, const IssueOptions& o) {
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(o.spiffe_id));
  MESHID_ASSIGN_OR_RETURN(Seconds ttl, parseDuration(o.ttl));
  SystemTime now = ctx.clock.now();
  MESHID_ASSIGN_OR_RETURN(pki::CaMaterial ca, pki::loadCaDirectory(o.ca_dir, now));
  // A CA that names its trust domain (a spiffe:// URI SAN) signs only for it.
  for (const auto& uri : pki::uriSans(ca.signing_cert.get())) {
    auto ca_id = pki::SpiffeId::parse(uri);
    if (ca_id.ok() && !(ca_id->trustDomain() == id.trustDomain())) {
      return Error::permissionDenied(fmt::format("the CA in {} is for trust domain {}, not {}",
                                                 o.ca_dir, ca_id->trustDomain().name(),
                                                 id.trustDomain().name()));
    }
  }
  fs::path out(o.out);
  MESHID_RETURN_IF_ERROR(checkIdentityFilesAbsent(out, o.force));

  pki::EvpPkeyPtr leaf_key;  // generated here, when no CSR is given
  pki::EvpPkeyPtr public_key;
  if (!o.csr.empty()) {
    MESHID_ASSIGN_OR_RETURN(std::string csr_data, readInput(o.csr, pki::kMaxCsrBytes));
    MESHID_ASSIGN_OR_RETURN(pki::ParsedCsr csr, pki::parseCsr(csr_data));
    MESHID_ASSIGN_OR_RETURN(pki::SpiffeId csr_id, pki::csrSpiffeId(csr));
    if (!(csr_id == id)) {
      return Error::permissionDenied(
          fmt::format("the CSR asks for {}, not {}", csr_id.str(), id.str()));
    }
    MESHID_ASSIGN_OR_RETURN(public_key, pki::publicKeyFromSpki(pki::der::asBytes(csr.spki_der)));
  } else {
    MESHID_ASSIGN_OR_RETURN(pki::KeyType key_type, pki::parseKeyType(o.key_type));
    if (key_type == pki::KeyType::kEd25519) {
      ctx.err << "warning: Envoy cannot load Ed25519 keys; use it only with other TLS stacks\n";
    }
    MESHID_ASSIGN_OR_RETURN(leaf_key, pki::generateKey(key_type));
    public_key = pki::shareKey(leaf_key.get());
  }

  MESHID_ASSIGN_OR_RETURN(auto signer,
                          pki::MemoryKeySigner::create(pki::shareKey(ca.signing_key.get())));
  pki::SvidRequest req{
      .public_key = public_key.get(), .spiffe_id = id, .lifetime = ttl, .now = now};
  MESHID_ASSIGN_OR_RETURN(pki::X509Ptr leaf,
                          pki::issueX509Svid(req, ca.signing_cert.get(), *signer));

  MESHID_RETURN_IF_ERROR(
      writeIdentityFiles(out, pki::certificateToPem(leaf.get()) + pki::certificatesToPem(ca.chain),
                         leaf_key.get(), pki::certificatesToPem(ca.roots)));

  auto info = pki::describeCertificate(leaf.get());
  if (o.json) {
    nlohmann::json j = {{"certificate", certificateJson(info, now)},
                        {"directory", out.string()},
                        {"files", {{"chain", kLeafChainFile}, {"bundle", kBundleFile}}}};
    if (leaf_key)
      j["files"]["key"] = kLeafKeyFile;
    ctx.out << j.dump(2) << "\n";
    return okResult();
  }
  ctx.out << fmt::format("issued {} ({}), serial {}, {}\n", id.str(), info.key, info.serial_hex,
                         validityRemark(info, now));
  ctx.out << fmt::format("  {}/{}  leaf + {} CA certificate(s)\n", out.string(), kLeafChainFile,
                         ca.chain.size());
  if (leaf_key) {
    ctx.out << fmt::format("  {}/{}  private key (0600)\n", out.string(), kLeafKeyFile);
  }
  ctx.out << fmt::format("  {}/{}  trust bundle ({} root(s))\n", out.string(), kBundleFile,
                         ca.roots.size());
  return okResult();
}

// Splits a host:port (or [v6]:port) endpoint.
Result<std::pair<std::string, uint16_t>> splitEndpoint(const std::string& endpoint) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
    return Error::invalidArgument(fmt::format("endpoint \"{}\" must be HOST:PORT", endpoint));
  }
  std::string host = endpoint.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  for (char c : endpoint.substr(colon + 1)) {
    if (c < '0' || c > '9' || (port = port * 10 + (c - '0')) > 65535) {
      return Error::invalidArgument(fmt::format("endpoint \"{}\" has an invalid port", endpoint));
    }
  }
  if (port == 0) {
    return Error::invalidArgument(fmt::format("endpoint \"{}\" has an invalid port", endpoint));
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

// Verifies certs (leaf first) against a roots file; returns the verdict for printing.
nlohmann::json verdictJson(const Result<pki::VerifiedChain>& r) {
  if (r.ok()) {
    nlohmann::json j = {{"valid", true}, {"chain_length", r->path.size()}};
    if (r->spiffe_id)
      j["spiffe_id"] = r->spiffe_id->str();
    return j;
  }
  return {{"valid", false}, {"reason", r.error().message}};
}

Result<pki::VerifiedChain> verifyPresented(const std::vector<pki::X509Ptr>& certs,
                                           const std::vector<pki::X509Ptr>& roots,
                                           const std::optional<pki::SpiffeId>& expected,
                                           SystemTime at) {
  std::vector<pki::X509Ptr> intermediates;
  for (size_t i = 1; i < certs.size(); ++i) {
    intermediates.push_back(pki::shareX509(certs[i].get()));
  }
  pki::ChainVerifyOptions opts{.at = at, .expected_id = expected, .svid_leaf_checks = true};
  return pki::verifyChain(certs.front().get(), intermediates, roots, opts);
}

Result<std::optional<pki::SpiffeId>> optionalSpiffeId(const std::string& text) {
  if (text.empty()) {
    return std::optional<pki::SpiffeId>();
  }
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(text));
  return std::optional<pki::SpiffeId>(std::move(id));
}

Result<int> runInspect(Context& ctx, const InspectOptions& o) {
  SystemTime now = ctx.clock.now();
  std::vector<pki::X509Ptr> certs;
  std::string header;
  nlohmann::json j;
  if (!o.connect.empty()) {
    MESHID_ASSIGN_OR_RETURN(auto endpoint, splitEndpoint(o.connect));
    pki::TlsProbeOptions probe;
    probe.host = endpoint.first;
    probe.port = endpoint.second;
    probe.server_name = o.server_name;
    probe.timeout = std::chrono::milliseconds(o.timeout_ms);
    if (!o.cert.empty() || !o.key.empty()) {
      if (o.cert.empty() || o.key.empty()) {
        return Error::invalidArgument("--cert and --key go together");
      }
      MESHID_ASSIGN_OR_RETURN(probe.client_chain, readCertificatesFile(o.cert));
      MESHID_ASSIGN_OR_RETURN(probe.client_key, readPrivateKeyFile(o.key));
    }
    MESHID_ASSIGN_OR_RETURN(pki::TlsProbeResult r, pki::probeTls(probe));
    certs = std::move(r.presented);
    header = fmt::format("{} presented {} certificate(s) over {} ({})", o.connect, certs.size(),
                         r.protocol, r.cipher);
    j["endpoint"] = o.connect;
    j["protocol"] = r.protocol;
    j["cipher"] = r.cipher;
  } else {
    if (o.file.empty()) {
      return Error::invalidArgument("give a FILE (or - for standard input) or --connect HOST:PORT");
    }
    MESHID_ASSIGN_OR_RETURN(certs, readCertificatesFile(o.file));
  }

  j["certificates"] = nlohmann::json::array();
  if (!o.json && !header.empty())
    ctx.out << header << "\n";
  for (size_t i = 0; i < certs.size(); ++i) {
    auto info = pki::describeCertificate(certs[i].get());
    if (o.json) {
      j["certificates"].push_back(certificateJson(info, now));
    } else {
      printCertificate(
          ctx.out, info, now,
          fmt::format("certificate {} of {}: {}", i + 1, certs.size(), certificateRole(info)));
    }
  }
  int code = kExitOk;
  if (!o.roots.empty()) {
    MESHID_ASSIGN_OR_RETURN(auto roots, readCertificatesFile(o.roots));
    MESHID_ASSIGN_OR_RETURN(auto expected, optionalSpiffeId(o.spiffe_id));
    auto verdict = verifyPresented(certs, roots, expected, now);
    j["verification"] = verdictJson(verdict);
    if (!o.json) {
      ctx.out << (verdict.ok() ? fmt::format("verified: chains to {}",
                                             pki::certificateLabel(verdict->path.back().get()))
                               : "NOT verified: " + verdict.error().message)
              << "\n";
    }
    code = verdict.ok() ? kExitOk : kExitFailure;
  }
  if (o.json)
    ctx.out << j.dump(2) << "\n";
  return code;
}

Result<int> runVerify(Context& ctx, const VerifyOptions& o) {
  MESHID_ASSIGN_OR_RETURN(auto roots, readCertificatesFile(o.roots));
  MESHID_ASSIGN_OR_RETURN(auto certs, readCertificatesFile(o.leaf));
  if (!o.chain.empty()) {
    MESHID_ASSIGN_OR_RETURN(auto extra, readCertificatesFile(o.chain));
    for (auto& c : extra)
      certs.push_back(std::move(c));
  }
  MESHID_ASSIGN_OR_RETURN(auto expected, optionalSpiffeId(o.spiffe_id));
  SystemTime at = ctx.clock.now();
  if (!o.at.empty()) {
    MESHID_ASSIGN_OR_RETURN(at, parseRfc3339(o.at));
  }
  Result<pki::VerifiedChain> verdict = verifyPresented(certs, roots, expected, at);
  if (verdict.ok() && !o.key.empty()) {
    MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr key, readPrivateKeyFile(o.key));
    auto match = pki::checkKeyMatchesCertificate(certs.front().get(), key.get());
    if (!match.ok())
      verdict = match.error();
  }
  if (o.json) {
    ctx.out << verdictJson(verdict).dump(2) << "\n";
  } else if (verdict.ok()) {
    auto leaf = pki::describeCertificate(certs.front().get());
    ctx.out << fmt::format("OK: {} chains to {} through {} intermediate(s); {}\n",
                           verdict->spiffe_id ? verdict->spiffe_id->str() : leaf.subject,
                           pki::certificateLabel(verdict->path.back().get()),
                           verdict->path.size() - 2, validityRemark(leaf, at));
  } else {
    ctx.out << "FAILED: " << verdict.error().message << "\n";
  }
  return verdict.ok() ? kExitOk : kExitFailure;
}

template <class Fn>
void setIntCallback(CLI::App* cmd, Context& ctx, bool& json, Fn fn) {
  cmd->callback([&ctx, &json, fn] {
    Result<int> r = fn();
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), json);
  });
}

}  // namespace

void addCertCommands(CLI::App& app, Context& ctx) {
  CLI::App* cert = app.add_subcommand("cert", "Issue, inspect and verify certificates");
  cert->require_subcommand(1);

  auto issue = std::make_shared<IssueOptions>();
  CLI::App* c = cert->add_subcommand("issue", "Issue an X.509-SVID offline from a CA directory");
  c->add_option("--ca", issue->ca_dir, "CA directory (Istio cacerts or cert-manager layout)")
      ->required();
  c->add_option("--spiffe-id", issue->spiffe_id, "spiffe://<trust-domain>/<path>")->required();
  c->add_option("--ttl", issue->ttl, "Lifetime, e.g. 1h (clamped to the CA's)")
      ->capture_default_str();
  c->add_option("--out", issue->out, "Directory for cert-chain.pem, key.pem, root-cert.pem")
      ->required();
  c->add_option("--key-type", issue->key_type, "Key type for a new key")->capture_default_str();
  c->add_option("--csr", issue->csr,
                "Sign this CSR (PEM or DER, - for stdin) instead of making a key");
  c->add_flag("--force", issue->force, "Replace existing files");
  c->add_flag("--json", issue->json, "Print JSON");
  c->callback([&ctx, issue] {
    auto r = runIssue(ctx, *issue);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), issue->json);
  });

  auto inspect = std::make_shared<InspectOptions>();
  CLI::App* i = cert->add_subcommand(
      "inspect", "Show each certificate of a PEM bundle, a DER file or a live TLS endpoint");
  i->add_option("file", inspect->file, "PEM or DER file, - for standard input");
  i->add_option("--connect", inspect->connect, "Inspect what HOST:PORT presents over TLS");
  i->add_option("--cert", inspect->cert, "Client certificate chain for --connect (mutual TLS)");
  i->add_option("--key", inspect->key, "Client private key for --connect");
  i->add_option("--roots", inspect->roots, "Also verify the chain against these roots");
  i->add_option("--spiffe-id", inspect->spiffe_id, "With --roots: the SPIFFE ID expected");
  i->add_option("--servername", inspect->server_name, "SNI name for --connect");
  i->add_option("--timeout-ms", inspect->timeout_ms, "Connect and handshake timeout")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  i->add_flag("--json", inspect->json, "Print JSON");
  setIntCallback(i, ctx, inspect->json, [&ctx, inspect] { return runInspect(ctx, *inspect); });

  auto verify = std::make_shared<VerifyOptions>();
  CLI::App* v = cert->add_subcommand(
      "verify", "Verify a leaf (and its chain) against roots; say why when it fails");
  v->add_option("leaf", verify->leaf, "Leaf certificate, optionally followed by its chain")
      ->required();
  v->add_option("--roots", verify->roots, "Trusted roots (PEM bundle)")->required();
  v->add_option("--chain", verify->chain, "Intermediates (PEM bundle)");
  v->add_option("--spiffe-id", verify->spiffe_id, "The SPIFFE ID the leaf must carry");
  v->add_option("--key", verify->key, "Check that this private key belongs to the leaf");
  v->add_option("--at", verify->at, "Verify at this time (RFC 3339) instead of now");
  v->add_flag("--json", verify->json, "Print JSON");
  setIntCallback(v, ctx, verify->json, [&ctx, verify] { return runVerify(ctx, *verify); });
}

}  // namespace meshid::cli
