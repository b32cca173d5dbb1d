// Drops a client's RST_STREAM for a stream it never opened, before nghttp2
// sees it.
//
// gRPC C++ clients (chttp2; grpc/grpc#19655) send RST_STREAM for a stream
// whose HEADERS they never wrote when a call is cancelled at once (a deadline
// of a millisecond or two). RFC 9113 §6.4 makes that a connection error, and
// nghttp2 answers it with GOAWAY(PROTOCOL_ERROR): every other call on the
// connection then fails UNAVAILABLE. gRPC's own servers ignore such a reset;
// so do we. Nothing else is changed: every other frame, and a malformed
// RST_STREAM (wrong length, stream 0, an even id), reaches nghttp2 as sent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace meshid::rpc {

class IdleResetFilter {
 public:
  // Receives the bytes to hand to HTTP/2, in order; returns false to stop
  // (the session refused them).
  using Sink = std::function<bool(const uint8_t* data, size_t len)>;

  // Feeds bytes as read from the connection (the client's preface first).
  // Returns false once the sink has refused bytes.
  bool feed(const uint8_t* data, size_t len, const Sink& sink);

  uint64_t dropped() const { return dropped_; }

 private:
  static constexpr size_t kPrefaceBytes = 24;
  static constexpr size_t kFrameHeaderBytes = 9;

  bool onHeader(const Sink& sink);

  size_t preface_left_ = kPrefaceBytes;
  std::array<uint8_t, kFrameHeaderBytes> header_{};
  size_t header_have_ = 0;
  uint64_t payload_left_ = 0;
  bool dropping_ = false;
  uint32_t highest_opened_ = 0;  // the highest stream id a HEADERS frame named
  uint64_t dropped_ = 0;
};

}  // namespace meshid::rpc
