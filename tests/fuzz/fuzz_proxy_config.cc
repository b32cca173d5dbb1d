// proxy.yaml: hostile YAML must give an error, never a crash, and a config
// that parses keeps what parseProxyConfig promises: every field passes its
// own validator again, durations stay in the range the rest of the proxy
// does arithmetic with, and the same text parses to a config a reload would
// take without a restart.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/admin_http.h"
#include "proxy/authz.h"
#include "proxy/config.h"
#include "require.h"

namespace {

using meshid::proxy::ProxyConfig;

// parseDuration's cap: nothing the proxy waits for is longer than a century,
// which keeps now() + duration (in nanoseconds) far from overflow.
constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 365 * 100);

using meshid::fuzz::require;

void checkDuration(std::chrono::milliseconds d) {
  require(d.count() > 0 && d <= kMaxDuration);
}

void checkAddress(const std::string& a) {
  require(meshid::splitHostPort(a).ok());
}

void checkAlpn(const std::vector<std::string>& alpn) {
  for (const auto& p : alpn) {
    require(!p.empty() && p.size() <= 255);
  }
}

// The allow list the parser built is the one its entries make.
void checkAllowList(const std::vector<std::string>& entries, const meshid::proxy::AllowList& list) {
  require(list.entries() == entries);
  require(list.empty() == entries.empty());
  require(meshid::proxy::AllowList::parse(entries).ok());
}

void checkConfig(const ProxyConfig& c) {
  require(!c.inbound.empty() || !c.outbound.empty());
  require(c.workers <= 256);
  require(c.max_connections >= 1);
  for (auto d : {c.certificates.poll_interval, c.sds.initial_fetch_timeout, c.handshake_timeout,
                 c.idle_timeout, c.ticket_key_rotation}) {
    checkDuration(d);
  }
  if (c.sds.socket.empty()) {
    require(c.certificates.cert_file.is_absolute() && c.certificates.key_file.is_absolute() &&
            c.certificates.bundle_file.is_absolute());
  } else {
    require(c.sds.socket.is_absolute());
    require(!c.sds.certificate.empty() && !c.sds.validation.empty() &&
            c.sds.certificate != c.sds.validation);
  }
  std::set<std::string> names;
  for (const auto& l : c.inbound) {
    require(names.insert(l.name).second);
    checkAddress(l.listen);
    checkAddress(l.forward);
    auto mode = meshid::proxy::parseMode(meshid::proxy::modeName(l.mode));
    require(mode.ok() && *mode == l.mode);
    checkAllowList(l.allow, l.allow_list);
    checkAlpn(l.alpn);
  }
  for (const auto& l : c.outbound) {
    require(names.insert(l.name).second);
    checkAddress(l.listen);
    checkAddress(l.destination);
    checkAllowList(l.expected_ids, l.expected);
    checkAlpn(l.alpn);
  }
  require(meshid::proxy::checkReloadable(c, c).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto c = meshid::proxy::parseProxyConfig(input, "/etc/meshid");
  if (!c.ok()) {
    return 0;
  }
  checkConfig(*c);
  // Parsing is a function of the text: a SIGHUP with an unchanged file
  // reloads cleanly, with the same modes and allow lists.
  auto again = meshid::proxy::parseProxyConfig(input, "/etc/meshid");
  require(again.ok() && meshid::proxy::checkReloadable(*c, *again).ok());
  for (size_t i = 0; i < c->inbound.size(); ++i) {
    require(c->inbound[i].mode == again->inbound[i].mode &&
            c->inbound[i].allow == again->inbound[i].allow);
  }
  for (size_t i = 0; i < c->outbound.size(); ++i) {
    require(c->outbound[i].expected_ids == again->outbound[i].expected_ids);
  }
  return 0;
}
