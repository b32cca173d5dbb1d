// The CA transport's framing on arbitrary bytes (a request body as a client
// sends it): unframeRequest never reads past the body, accepts only what
// frames back to the same bytes, and percentEncode's output is plain ASCII.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "rpc/grpc_wire.h"

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
  return 0;
}
