// The gRPC framing of PROTOCOLS.md §1 on top of HTTP/2, as pure functions:
// length-prefixed messages, the content type, grpc-message's encoding.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid::rpc {

// The 5-byte prefix (0 = not compressed, 4-byte big-endian length) + message.
std::string frameMessage(std::string_view message);
void appendFramedMessage(std::string& out, std::string_view message);

// The one message of a unary request's body. Refuses a compressed message
// (UNIMPLEMENTED: we announce identity only), a message over `max_bytes`
// (RESOURCE_EXHAUSTED), a torn prefix, a body that is not exactly one
// message (INTERNAL, as gRPC's own servers answer).
Result<std::string_view> unframeRequest(std::string_view body, size_t max_bytes);

// "application/grpc" and its "+proto" / ";..." variants (gRPC's rule).
bool isGrpcContentType(std::string_view content_type);

// grpc-message is percent-encoded: every byte outside 0x20-0x7E, and '%'.
std::string percentEncode(std::string_view text);

}  // namespace meshid::rpc
