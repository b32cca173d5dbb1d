// `meshid ca issuances`: who got which certificate, from the CA's records
// (read beside a running CA: the database is in WAL mode).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ca/config.h"
#include "cli/commands.h"
#include "cli/context.h"
#include "cli/output.h"
#include "common/duration.h"
#include "store/sqlite_store.h"

namespace meshid::cli {
namespace {

struct IssuancesOptions {
  std::string config;
  std::string serial;
  std::string spiffe_id;
  std::string since;
  size_t limit = 50;
  bool json = false;
};

nlohmann::json toJson(const store::IssuanceRecord& r) {
  return {{"serial", r.serial},
          {"spiffe_id", r.spiffe_id},
          {"issued_at", formatRfc3339(r.issued_at)},
          {"not_before", formatRfc3339(r.not_before)},
          {"not_after", formatRfc3339(r.not_after)},
          {"signer", r.signer},
          {"caller", r.caller},
          {"method", r.method},
          {"api", r.api}};
}

Result<void> runIssuances(Context& ctx, const IssuancesOptions& o) {
  MESHID_ASSIGN_OR_RETURN(ca::CaConfig config, ca::loadCaConfig(o.config));
  if (!std::filesystem::exists(config.databasePath())) {
    return Error::notFound(
        fmt::format("no CA database at {}: has `meshid ca serve` run with this config?",
                    config.databasePath().string()));
  }
  if (!o.serial.empty() && (!o.spiffe_id.empty() || !o.since.empty())) {
    return Error::invalidArgument("--serial names one record: give it alone");
  }
  MESHID_ASSIGN_OR_RETURN(auto db, store::SqliteStore::open(config.databasePath()));
  std::vector<store::IssuanceRecord> records;
  if (!o.serial.empty()) {
    std::string serial = o.serial;
    for (char& c : serial)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (serial.starts_with("serial="))
      serial = serial.substr(7);  // pasted from `openssl x509 -serial`
    MESHID_ASSIGN_OR_RETURN(auto found, db->findIssuance(serial));
    if (!found) {
      return Error::notFound(fmt::format(
          "no issuance with serial {} (never issued by this CA, or deleted by retention)", serial));
    }
    records.push_back(std::move(*found));
  } else {
    store::IssuanceQuery q{.spiffe_id = o.spiffe_id, .limit = o.limit};
    if (!o.since.empty()) {
      MESHID_ASSIGN_OR_RETURN(Seconds ago, parseDuration(o.since));
      q.since = ctx.clock.now() - ago;
    }
    MESHID_ASSIGN_OR_RETURN(records, db->listIssuances(q));
  }
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : records)
      j.push_back(toJson(r));
    ctx.out << j.dump(2) << "\n";
    return okResult();
  }
  for (const auto& r : records) {
    ctx.out << fmt::format("{}  {}  {}  not_after={}  {} by {} ({}, {} API)\n",
                           formatRfc3339(r.issued_at), r.serial, r.spiffe_id,
                           formatRfc3339(r.not_after), r.signer, r.caller, r.method, r.api);
  }
  if (records.empty())
    ctx.err << "no issuances match\n";
  return okResult();
}

}  // namespace

void addRecordsCommand(CLI::App& app, Context& ctx) {
  CLI::App* ca = app.get_subcommand("ca");
  auto o = std::make_shared<IssuancesOptions>();
  CLI::App* c = ca->add_subcommand(
      "issuances", "List the certificates the CA issued, newest first, from its records");
  c->add_option("--config", o->config, "The CA's ca.yaml (its database is read)")->required();
  c->add_option("--serial", o->serial, "One certificate, by serial (hex, as openssl prints it)");
  c->add_option("--spiffe-id", o->spiffe_id, "Only this identity's certificates");
  c->add_option("--since", o->since, "Only those issued within this long (e.g. 24h)");
  c->add_option("--limit", o->limit, "At most this many")->capture_default_str();
  c->add_flag("--json", o->json, "Print JSON");
  c->callback([&ctx, o] {
    auto r = runIssuances(ctx, *o);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), o->json);
  });
}

}  // namespace meshid::cli
