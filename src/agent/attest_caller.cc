#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/services.h"

namespace meshid::agent {

Result<AttestedCaller> attestCaller(ServingContext& ctx, std::string_view grpc_peer,
                                    std::string_view api) {
  auto peer = ctx.peers.lookup(grpc_peer);
  if (!peer) {
    return Error::permissionDenied(
        fmt::format("caller unknown: connect over the agent's {} Unix socket", api));
  }
  AttestedCaller caller{*peer, entriesFor(ctx.config.entries, *peer)};
  if (caller.entries.empty()) {
    ctx.metrics.denied(api);
    spdlog::warn("{}: no registration entry matches caller {}", api, peer->describe());
    return Error::permissionDenied(
        fmt::format("no identity is registered for this caller (uid {}, gid {}, {})", peer->uid,
                    peer->gid, peer->exe));
  }
  return caller;
}

}  // namespace meshid::agent
