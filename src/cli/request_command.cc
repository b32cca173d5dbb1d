// `meshid cert request`: get a certificate from a running CA over gRPC, with
// a join token, a service-account token or (renewal) the current certificate.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/identity_files.h"
#include "cli/inputs.h"
#include "cli/output.h"
#include "common/duration.h"
#include "common/file_util.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "meshid/v1/ca.grpc.pb.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/csr.h"
#include "pki/key.h"

namespace meshid::cli {
namespace {

struct RequestOptions {
  std::string ca_addr;
  std::string ca_root;
  std::string spiffe_id;
  std::string token_file;  // a join token or a JWT; "-" for stdin
  std::string cert;        // renewal over mTLS
  std::string key;
  std::string ttl = "1h";
  std::string key_type = "ec-p256";
  std::string api = "meshid";
  std::string timeout = "10s";
  std::string out;
  bool force = false;
  bool json = false;
};

Error fromStatus(const grpc::Status& s) {
  auto code = static_cast<Code>(s.error_code());
  return Error{code, fmt::format("the CA refused ({}): {}", codeName(code), s.error_message())};
}

Result<int> runRequest(Context& ctx, const RequestOptions& o) {
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(o.spiffe_id));
  MESHID_ASSIGN_OR_RETURN(Seconds ttl, parseDuration(o.ttl));
  MESHID_ASSIGN_OR_RETURN(Seconds timeout, parseDuration(o.timeout));
  MESHID_ASSIGN_OR_RETURN(pki::KeyType key_type, pki::parseKeyType(o.key_type));
  if (o.api != "meshid" && o.api != "istio") {
    return Error::invalidArgument("--api must be meshid or istio");
  }
  if (o.token_file.empty() == o.cert.empty()) {
    return Error::invalidArgument(
        "give --token-file (join token or JWT) or --cert/--key (renewal)");
  }
  MESHID_RETURN_IF_ERROR(checkIdentityFilesAbsent(o.out, o.force));

  grpc::SslCredentialsOptions tls;
  MESHID_ASSIGN_OR_RETURN(tls.pem_root_certs, readFile(o.ca_root, pki::kMaxBundleBytes));
  std::string token;
  if (!o.token_file.empty()) {
    MESHID_ASSIGN_OR_RETURN(token, readInput(o.token_file, 16 * 1024));
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
  } else {
    if (o.key.empty())
      return Error::invalidArgument("--cert needs --key");
    MESHID_ASSIGN_OR_RETURN(tls.pem_cert_chain, readFile(o.cert, pki::kMaxBundleBytes));
    MESHID_ASSIGN_OR_RETURN(tls.pem_private_key, readFile(o.key, 64 * 1024));
  }
  auto channel = grpc::CreateChannel(o.ca_addr, grpc::SslCredentials(tls));
  OPENSSL_cleanse(tls.pem_private_key.data(), tls.pem_private_key.size());

  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr key, pki::generateKey(key_type));
  MESHID_ASSIGN_OR_RETURN(pki::X509ReqPtr req, pki::buildCsr(key.get(), id));
  std::string csr = pki::csrToPem(req.get());

  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!token.empty())
    call.AddMetadata("authorization", "Bearer " + token);
  std::vector<std::string> chain;  // leaf first, then intermediates
  std::string bundle_pem;
  if (o.api == "meshid") {
    auto stub = meshid::v1::MeshCA::NewStub(channel);
    meshid::v1::SignRequest request;
    request.set_csr(csr);
    request.set_ttl_seconds(ttl.count());
    meshid::v1::SignResponse response;
    grpc::Status s = stub->Sign(&call, request, &response);
    if (!s.ok())
      return fromStatus(s);
    chain.assign(response.cert_chain().begin(), response.cert_chain().end());
    for (const auto& r : response.bundle().roots())
      bundle_pem += r;
  } else {
    auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel);
    istio::v1::auth::IstioCertificateRequest request;
    request.set_csr(csr);
    request.set_validity_duration(ttl.count());
    istio::v1::auth::IstioCertificateResponse response;
    grpc::Status s = stub->CreateCertificate(&call, request, &response);
    if (!s.ok())
      return fromStatus(s);
    if (response.cert_chain_size() < 2) {
      return Error::internal("the CA answered with fewer than two certificates");
    }
    chain.assign(response.cert_chain().begin(), response.cert_chain().end() - 1);
    bundle_pem = response.cert_chain(response.cert_chain_size() - 1);
  }
  if (chain.empty())
    return Error::internal("the CA answered with no certificate");

  // Check what came back before writing it anywhere.
  std::string chain_pem;
  for (const auto& c : chain)
    chain_pem += c;
  MESHID_ASSIGN_OR_RETURN(auto certs, pki::parseCertificatesPem(chain_pem));
  MESHID_ASSIGN_OR_RETURN(auto roots, pki::parseCertificatesPem(bundle_pem));
  MESHID_RETURN_IF_ERROR(pki::checkKeyMatchesCertificate(certs.front().get(), key.get()));
  std::vector<pki::X509Ptr> intermediates;
  for (size_t i = 1; i < certs.size(); ++i)
    intermediates.push_back(pki::shareX509(certs[i].get()));
  SystemTime now = ctx.clock.now();
  auto verified = pki::verifyChain(certs.front().get(), intermediates, roots,
                                   {.at = now, .expected_id = id, .svid_leaf_checks = true});
  if (!verified.ok())
    return verified.error().wrap("the CA's answer does not verify");
  MESHID_RETURN_IF_ERROR(writeIdentityFiles(o.out, chain_pem, key.get(), bundle_pem));

  auto info = pki::describeCertificate(certs.front().get());
  if (o.json) {
    ctx.out << nlohmann::json{{"certificate", certificateJson(info, now)},
                              {"directory", o.out},
                              {"api", o.api}}
                   .dump(2)
            << "\n";
  } else {
    ctx.out << fmt::format("{} issued {} over gRPC ({} API), serial {}, {}\n", o.ca_addr, id.str(),
                           o.api, info.serial_hex, validityRemark(info, now));
    ctx.out << fmt::format("  {}/{{{}, {} (0600), {}}}\n", o.out, kLeafChainFile, kLeafKeyFile,
                           kBundleFile);
  }
  return kExitOk;
}

}  // namespace

void addRequestCommand(CLI::App& app, Context& ctx) {
  CLI::App* cert = app.get_subcommand("cert");
  auto o = std::make_shared<RequestOptions>();
  CLI::App* c = cert->add_subcommand(
      "request", "Get a certificate from a running meshid CA over gRPC (a new key is made here)");
  c->add_option("--ca-addr", o->ca_addr, "CA gRPC address HOST:PORT")->required();
  c->add_option("--ca-root", o->ca_root, "Root(s) that the CA's serving certificate chains to")
      ->required();
  c->add_option("--spiffe-id", o->spiffe_id, "The identity to request")->required();
  c->add_option("--token-file", o->token_file,
                "File holding a join token or a service-account JWT (- for stdin)");
  c->add_option("--cert", o->cert, "Current certificate chain, to renew over mTLS");
  c->add_option("--key", o->key, "Its private key");
  c->add_option("--ttl", o->ttl, "Requested lifetime")->capture_default_str();
  c->add_option("--key-type", o->key_type, "Key type of the new key")->capture_default_str();
  c->add_option("--api", o->api, "meshid (MeshCA/Sign) or istio (CreateCertificate)")
      ->capture_default_str();
  c->add_option("--timeout", o->timeout, "Deadline for the call")->capture_default_str();
  c->add_option("--out", o->out, "Directory for cert-chain.pem, key.pem, root-cert.pem")
      ->required();
  c->add_flag("--force", o->force, "Replace existing files");
  c->add_flag("--json", o->json, "Print JSON");
  c->callback([&ctx, o] {
    auto r = runRequest(ctx, *o);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), o->json);
  });
}

}  // namespace meshid::cli
