// The inbound listener's first look at a connection (PERMISSIVE's sniff).
#include "proxy/inbound_sniff.h"

#include <gtest/gtest.h>

#include <array>

namespace meshid::proxy {
namespace {

// The first bytes of a TLS record carrying a ClientHello, and of an HTTP request.
constexpr std::array<unsigned char, 3> kClientHello{0x16, 0x03, 0x01};
constexpr std::array<unsigned char, 4> kHttp{'G', 'E', 'T', ' '};

TEST(InboundSniff, AClientHelloGoesToTlsUnlessTheListenerIsDisabled) {
  EXPECT_EQ(sniffInbound(Mode::kStrict, kClientHello), InboundPath::kTls);
  EXPECT_EQ(sniffInbound(Mode::kPermissive, kClientHello), InboundPath::kTls);
  EXPECT_EQ(sniffInbound(Mode::kDisable, kClientHello), InboundPath::kPlaintext);
}

TEST(InboundSniff, PlaintextIsRefusedByStrictAndForwardedByPermissive) {
  EXPECT_EQ(sniffInbound(Mode::kStrict, kHttp), InboundPath::kRefused);
  EXPECT_EQ(sniffInbound(Mode::kPermissive, kHttp), InboundPath::kPlaintext);
  EXPECT_EQ(sniffInbound(Mode::kDisable, kHttp), InboundPath::kPlaintext);
}

TEST(InboundSniff, OnlyTheFirstByteCounts) {
  const std::array<unsigned char, 1> other_record{0x17};  // application data, not a hello
  EXPECT_EQ(sniffInbound(Mode::kStrict, other_record), InboundPath::kRefused);
  EXPECT_EQ(sniffInbound(Mode::kStrict, std::span(kClientHello).first(kSniffBytes)),
            InboundPath::kTls);
  EXPECT_EQ(sniffInbound(Mode::kStrict, {}), InboundPath::kRefused) << "nothing is not a hello";
  EXPECT_EQ(sniffInbound(Mode::kPermissive, {}), InboundPath::kPlaintext);
}

}  // namespace
}  // namespace meshid::proxy
