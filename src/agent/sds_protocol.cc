#include "agent/sds_protocol.h"

#include <fmt/format.h>

namespace meshid::agent {

std::optional<SdsSend> SdsStreamState::current(const Lookup& lookup) {
  SdsSend send;
  for (const auto& name : names_) {
    auto v = lookup(name);
    if (!v)
      continue;
    send.names.push_back(name);
    if (!send.version_info.empty())
      send.version_info += ",";
    send.version_info += names_.size() == 1 ? *v : name + "=" + *v;
  }
  if (send.names.empty())
    return std::nullopt;  // hold until something exists
  if (send.version_info == last_sent_version_)
    return std::nullopt;
  send.nonce = fmt::format("{}", ++nonce_counter_);
  last_nonce_ = send.nonce;
  last_sent_version_ = send.version_info;
  return send;
}

std::optional<SdsSend> SdsStreamState::onRequest(const SdsRequest& request, const Lookup& lookup) {
  if (!subscribed_ || request.response_nonce.empty()) {
    subscribed_ = true;
    names_ = request.resource_names;
    // The client holds nothing on this stream: whatever exists goes out,
    // even content sent before (a reconnect starts from scratch).
    last_sent_version_.clear();
    return current(lookup);
  }
  if (request.response_nonce != last_nonce_) {
    ++stale_;
    return std::nullopt;
  }
  if (request.nack) {
    ++nacks_;
  } else {
    ++acks_;
    acked_version_ = request.version_info;
  }
  if (request.resource_names != names_) {
    names_ = request.resource_names;
    last_sent_version_.clear();
    return current(lookup);
  }
  return std::nullopt;
}

std::optional<SdsSend> SdsStreamState::onChange(const Lookup& lookup) {
  if (!subscribed_)
    return std::nullopt;
  return current(lookup);
}

}  // namespace meshid::agent
