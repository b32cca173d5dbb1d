// The CA transport's framing on arbitrary bytes (a request body as a client
// sends it): unframeRequest never reads past the body, accepts only what
// frames back to the same bytes, and percentEncode's output is plain ASCII.
// The same bytes as a connection's HTTP/2 stream: IdleResetFilter removes
// only 13-byte resets and passes the same bytes however they are split.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rpc/grpc_wire.h"
#include "rpc/idle_reset_filter.h"

namespace {

std::string filtered(const uint8_t* data, size_t size, size_t chunk, uint64_t* dropped) {
  meshid::rpc::IdleResetFilter filter;
  std::string out;
  auto sink = [&](const uint8_t* d, size_t n) {
    out.append(reinterpret_cast<const char*>(d), n);
    return true;
  };
  for (size_t at = 0; at < size; at += chunk)
    filter.feed(data + at, std::min(chunk, size - at), sink);
  *dropped = filter.dropped();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto message = meshid::rpc::unframeRequest(body, 4096);
  if (message.ok()) {
    if (message->size() > 4096 || meshid::rpc::frameMessage(*message) != body)
      std::abort();
  }
  std::string encoded = meshid::rpc::percentEncode(body);
  for (unsigned char c : encoded) {
    if (c < 0x20 || c > 0x7e)
      std::abort();
  }
  (void)meshid::rpc::isGrpcContentType(body);

  uint64_t dropped_whole = 0;
  uint64_t dropped_split = 0;
  std::string whole = filtered(data, size, size > 0 ? size : 1, &dropped_whole);
  std::string split = filtered(data, size, 1 + size % 7, &dropped_split);
  // Removed: 13 bytes per dropped reset (the last one's payload may be cut
  // short by the input's end), plus a frame header still incomplete at the end.
  if (whole != split || dropped_whole != dropped_split || whole.size() > size)
    std::abort();
  uint64_t removed = size - whole.size();
  if (removed + 4 < 13 * dropped_whole || removed > 13 * dropped_whole + 8)
    std::abort();
  return 0;
}
