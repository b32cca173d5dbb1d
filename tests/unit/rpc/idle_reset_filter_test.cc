#include "rpc/idle_reset_filter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace meshid::rpc {
namespace {

const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string frame(uint8_t type, uint32_t stream, std::string payload) {
  auto n = static_cast<uint32_t>(payload.size());
  std::string f{static_cast<char>(n >> 16),
                static_cast<char>(n >> 8),
                static_cast<char>(n),
                static_cast<char>(type),
                0,
                static_cast<char>(stream >> 24),
                static_cast<char>(stream >> 16),
                static_cast<char>(stream >> 8),
                static_cast<char>(stream)};
  return f + payload;
}
std::string headers(uint32_t stream) {
  return frame(0x1, stream, "hpack");
}
std::string reset(uint32_t stream) {
  return frame(0x3, stream, std::string("\0\0\0\x08", 4));
}
std::string data(uint32_t stream, std::string body) {
  return frame(0x0, stream, std::move(body));
}

// Feeds `in` in pieces of `chunk` bytes; returns what reached the sink.
std::string pass(const std::string& in, size_t chunk, uint64_t* dropped = nullptr) {
  IdleResetFilter filter;
  std::string out;
  for (size_t at = 0; at < in.size(); at += chunk) {
    size_t n = std::min(chunk, in.size() - at);
    EXPECT_TRUE(filter.feed(reinterpret_cast<const uint8_t*>(in.data()) + at, n,
                            [&](const uint8_t* d, size_t len) {
                              out.append(reinterpret_cast<const char*>(d), len);
                              return true;
                            }));
  }
  if (dropped)
    *dropped = filter.dropped();
  return out;
}

TEST(IdleResetFilter, DropsOnlyAResetOfAStreamTheClientNeverOpened) {
  const std::string settings = frame(0x4, 0, "");
  const std::string kept_before = kPreface + settings + headers(1) + data(1, "request") + reset(1);
  const std::string idle = reset(5);  // HEADERS for 3 and 5 never sent: gRPC's early cancel
  const std::string kept_after =
      headers(3) + reset(3) +
      frame(0x3, 9, std::string(8, '\0')) +  // a reset of the wrong length: nghttp2 judges it
      reset(0) + reset(4) +                  // stream 0 and a server stream id: likewise
      data(3, std::string(300, 'x')) + headers(7) + reset(7);
  const std::string in = kept_before + idle + kept_after;
  const std::string expected = kept_before + kept_after;
  // However the connection's reads split the bytes, the same bytes go through.
  for (size_t chunk :
       {in.size(), size_t{1}, size_t{2}, size_t{5}, size_t{9}, size_t{13}, size_t{64}}) {
    uint64_t dropped = 0;
    EXPECT_EQ(pass(in, chunk, &dropped), expected) << "in pieces of " << chunk;
    EXPECT_EQ(dropped, 1u);
  }
}

TEST(IdleResetFilter, PassesEverythingWhenNothingIsIdle) {
  const std::string in = kPreface + headers(1) + data(1, "a") + reset(1) + headers(3) + reset(1);
  EXPECT_EQ(pass(in, 3), in);
  // Garbage where the preface should be is nghttp2's to refuse, untouched.
  const std::string garbage(100, '\x03');
  EXPECT_EQ(pass(garbage, 7), garbage);
}

TEST(IdleResetFilter, StopsWhenTheSessionRefuses) {
  IdleResetFilter filter;
  const std::string in = kPreface + headers(1) + data(1, "body");
  size_t calls = 0;
  bool ok = filter.feed(reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                        [&](const uint8_t*, size_t) { return ++calls < 2; });
  EXPECT_FALSE(ok);
  EXPECT_EQ(calls, 2u);
}

}  // namespace
}  // namespace meshid::rpc
