// `meshid csr create|inspect`: the request side, for bootstrapping hosts and
// for checking what another tool produced.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/inputs.h"
#include "cli/output.h"
#include "common/file_util.h"
#include "pki/csr.h"
#include "pki/key.h"

namespace meshid::cli {
namespace {

struct CreateOptions {
  std::string spiffe_id;
  std::string key;      // existing key to use
  std::string key_out;  // where to write a new key
  std::string out = "-";
  std::string key_type = "ec-p256";
  bool force = false;
};

struct InspectOptions {
  std::string file;
  bool json = false;
};

Result<void> runCreate(Context& ctx, const CreateOptions& o) {
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(o.spiffe_id));
  if (o.key.empty() == o.key_out.empty()) {
    return Error::invalidArgument("give exactly one of --key (use a key) or --key-out (make one)");
  }
  for (const std::string& path : {o.key_out, o.out}) {
    if (!o.force && !path.empty() && path != "-" && std::filesystem::exists(path)) {
      return Error::alreadyExists(
          fmt::format("{} already exists (use --force to replace it)", path));
    }
  }
  pki::EvpPkeyPtr key;
  if (!o.key.empty()) {
    MESHID_ASSIGN_OR_RETURN(key, readPrivateKeyFile(o.key));
  } else {
    MESHID_ASSIGN_OR_RETURN(pki::KeyType type, pki::parseKeyType(o.key_type));
    MESHID_ASSIGN_OR_RETURN(key, pki::generateKey(type));
  }
  MESHID_ASSIGN_OR_RETURN(pki::X509ReqPtr req, pki::buildCsr(key.get(), id));
  if (!o.key_out.empty()) {
    MESHID_RETURN_IF_ERROR(writePrivateKeyFile(o.key_out, key.get()));
  }
  std::string pem = pki::csrToPem(req.get());
  if (o.out == "-") {
    ctx.out << pem;
  } else {
    MESHID_RETURN_IF_ERROR(writeFileAtomic(o.out, pem, kPublicFileMode));
  }
  return okResult();
}

// The verdict on the SPIFFE ID is part of the output; only unreadable input is an Error.
Result<int> runInspect(Context& ctx, const InspectOptions& o) {
  MESHID_ASSIGN_OR_RETURN(std::string data, readInput(o.file, pki::kMaxCsrBytes));
  MESHID_ASSIGN_OR_RETURN(pki::ParsedCsr csr, pki::parseCsr(data));
  auto id = pki::csrSpiffeId(csr);
  if (o.json) {
    nlohmann::json j = {{"subject", csr.subject},   {"key", csr.key.description},
                        {"uri_sans", csr.uri_sans}, {"dns_sans", csr.dns_sans},
                        {"ip_sans", csr.ip_sans},   {"email_sans", csr.email_sans},
                        {"signature_valid", true}};
    j["spiffe_id"] = id.ok() ? nlohmann::json(id->str()) : nlohmann::json(nullptr);
    if (!id.ok())
      j["spiffe_id_error"] = id.error().message;
    ctx.out << j.dump(2) << "\n";
  } else {
    ctx.out << "certificate signing request (signature verified)\n";
    ctx.out << fmt::format("  {:<12}  {}\n", "spiffe id",
                           id.ok() ? id->str() : "(invalid: " + id.error().message + ")");
    ctx.out << fmt::format("  {:<12}  {}\n", "subject",
                           csr.subject.empty() ? "(empty)" : csr.subject);
    ctx.out << fmt::format("  {:<12}  {}\n", "key", csr.key.description);
    if (!csr.dns_sans.empty())
      ctx.out << fmt::format("  {:<12}  {}\n", "dns names", fmt::join(csr.dns_sans, ", "));
  }
  if (!id.ok() && !o.json) {
    ctx.err << "error: " << id.error().message << "\n";
  }
  return id.ok() ? kExitOk : kExitFailure;
}

}  // namespace

void addCsrCommands(CLI::App& app, Context& ctx) {
  CLI::App* csr = app.add_subcommand("csr", "Create and inspect certificate signing requests");
  csr->require_subcommand(1);

  auto create = std::make_shared<CreateOptions>();
  CLI::App* c = csr->add_subcommand("create", "Create a CSR whose only URI SAN is a SPIFFE ID");
  c->add_option("--spiffe-id", create->spiffe_id, "spiffe://<trust-domain>/<path>")->required();
  c->add_option("--key", create->key, "Use this private key");
  c->add_option("--key-out", create->key_out, "Make a new key and write it here (0600)");
  c->add_option("--key-type", create->key_type, "Key type for a new key")->capture_default_str();
  c->add_option("--out", create->out, "Where to write the CSR PEM (- for stdout)")
      ->capture_default_str();
  c->add_flag("--force", create->force, "Replace existing files");
  c->callback([&ctx, create] {
    auto r = runCreate(ctx, *create);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), false);
  });

  auto inspect = std::make_shared<InspectOptions>();
  CLI::App* i = csr->add_subcommand("inspect", "Parse a CSR, check its signature and SPIFFE ID");
  i->add_option("file", inspect->file, "PEM or DER file, - for standard input")->required();
  i->add_flag("--json", inspect->json, "Print JSON");
  i->callback([&ctx, inspect] {
    auto r = runInspect(ctx, *inspect);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), inspect->json);
  });
}

}  // namespace meshid::cli
