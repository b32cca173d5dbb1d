// A DiscoveryResponse from the agent's SDS socket as the bytes on the
// stream: parsed as protobuf, then every check the SDS client makes before
// it ACKs or NACKs (applySdsResponse: the Secret type, only the names asked
// for, inline PEM of bounded size, then the real snapshot build with its PEM
// parsing, key match, validity and trust domain checks). Never a crash; a
// response is accepted only in the shape the client promises, a refusal
// changes nothing, and the same response twice publishes once.
#include <google/protobuf/stubs/logging.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "proxy/sds_client.h"
#include "proxy/snapshot_store.h"
#include "require.h"

namespace {

namespace discovery = envoy::service::discovery::v3;
using meshid::proxy::SdsMaterial;

constexpr const char* kSecretType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
constexpr size_t kMaxPemBytes = 1 << 20;

using meshid::fuzz::require;

struct Harness {
  Harness() {
    // Quiet: every published snapshot logs, and protobuf logs each string
    // field that is not UTF-8.
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);
  }
  meshid::proxy::ProxyConfig config{meshid::pki::TrustDomain::parse("example.org").value()};
  // Frozen at start: one run decides by one time, and scripts/fuzz.sh's
  // seed certificates, issued just before, are valid at it.
  meshid::FakeClock clock{std::chrono::system_clock::now()};
};

void checkPem(const std::optional<std::string>& pem) {
  if (pem) {
    require(!pem->empty() && pem->size() <= kMaxPemBytes);
  }
}

bool same(const SdsMaterial& a, const SdsMaterial& b) {
  return a.chain_pem == b.chain_pem && a.key_pem == b.key_pem && a.bundle_pem == b.bundle_pem;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness h;
  discovery::DiscoveryResponse r;
  if (!r.ParseFromArray(data, static_cast<int>(size))) {
    return 0;
  }
  const auto& names = h.config.sds;
  auto read = meshid::proxy::readSdsResponse(r, names.certificate, names.validation);
  if (read.ok()) {
    require(r.type_url() == kSecretType && r.resources_size() >= 1 && r.resources_size() <= 2);
    require(read->chain_pem.has_value() == read->key_pem.has_value());
    require(read->chain_pem || read->bundle_pem);
    checkPem(read->chain_pem);
    checkPem(read->key_pem);
    checkPem(read->bundle_pem);
  }
  // The verdict is the message's, not its encoding's.
  std::string wire;
  require(r.SerializeToString(&wire));
  discovery::DiscoveryResponse again;
  require(again.ParseFromString(wire));
  auto reread = meshid::proxy::readSdsResponse(again, names.certificate, names.validation);
  require(reread.ok() == read.ok());
  if (read.ok()) {
    require(same(*read, *reread));
  } else {
    require(reread.error().message == read.error().message);
  }

  // The stream's step on a new stream: nothing held, nothing published.
  meshid::proxy::SnapshotStore store(h.config, h.clock);
  SdsMaterial held;
  auto applied = meshid::proxy::applySdsResponse(r, h.config, held, store);
  if (!read.ok()) {
    require(!applied.ok() && applied.error().message == read.error().message);
  }
  if (!applied.ok()) {
    require(same(held, SdsMaterial()) && store.current() == nullptr);
  } else {
    require(same(held, *read));
    require(*applied == held.complete() && *applied == (store.current() != nullptr));
  }
  // The same response again (an agent that resends): the same verdict, and
  // nothing new published.
  const SdsMaterial before = held;
  const auto published = store.current();
  auto second = meshid::proxy::applySdsResponse(r, h.config, held, store);
  require(second.ok() == applied.ok());
  if (second.ok()) {
    require(!*second);
  } else {
    require(second.error().message == applied.error().message);
  }
  require(same(held, before) && store.current() == published);
  // Nothing left on OpenSSL's per-thread error queue for the next caller.
  require(ERR_peek_error() == 0);
  return 0;
}
