#include "rpc/grpc_wire.h"

#include <gtest/gtest.h>

namespace meshid::rpc {
namespace {

std::string prefix(uint8_t flags, uint32_t length) {
  return std::string{static_cast<char>(flags), static_cast<char>(length >> 24),
                     static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                     static_cast<char>(length)};
}

TEST(GrpcWire, FramedMessageRoundTrips) {
  std::string framed = frameMessage("hello");
  EXPECT_EQ(framed, prefix(0, 5) + "hello");
  auto back = unframeRequest(framed, 64);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "hello");
  // An empty message is a message (GetTrustBundleRequest has no fields).
  auto empty = unframeRequest(frameMessage(""), 64);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST(GrpcWire, LengthUsesAllFourBytesBigEndian) {
  std::string big(70000, 'x');
  std::string framed = frameMessage(big);
  EXPECT_EQ(framed.substr(0, 5), prefix(0, 70000));
  auto back = unframeRequest(framed, 1 << 20);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 70000u);
}

TEST(GrpcWire, RefusesWhatIsNotExactlyOneUncompressedMessage) {
  EXPECT_EQ(unframeRequest("", 64).error().code, Code::kInternal);
  EXPECT_EQ(unframeRequest(std::string("\0\0\0", 3), 64).error().code, Code::kInternal);
  EXPECT_EQ(unframeRequest(prefix(0, 10) + "short", 64).error().code, Code::kInternal);
  EXPECT_EQ(unframeRequest(frameMessage("a") + frameMessage("b"), 64).error().code,
            Code::kInternal);
  EXPECT_EQ(unframeRequest(prefix(1, 1) + "z", 64).error().code, Code::kUnimplemented);
  EXPECT_EQ(unframeRequest(prefix(2, 1) + "z", 64).error().code, Code::kInternal);
}

TEST(GrpcWire, MessageOverTheCapIsResourceExhaustedBeforeItsBytesAreNeeded) {
  // Only the prefix is needed to refuse: a length of 4 GiB - 1 with no body.
  auto r = unframeRequest(prefix(0, 0xffffffff), 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Code::kResourceExhausted);
  EXPECT_NE(r.error().message.find("1024"), std::string::npos) << r.error().message;
  EXPECT_TRUE(unframeRequest(frameMessage(std::string(1024, 'a')), 1024).ok());
}

TEST(GrpcWire, ContentTypesFollowGrpcsRule) {
  EXPECT_TRUE(isGrpcContentType("application/grpc"));
  EXPECT_TRUE(isGrpcContentType("application/grpc+proto"));
  EXPECT_TRUE(isGrpcContentType("application/grpc;charset=utf-8"));
  EXPECT_FALSE(isGrpcContentType("application/grpcx"));
  EXPECT_FALSE(isGrpcContentType("application/json"));
  EXPECT_FALSE(isGrpcContentType(""));
  EXPECT_FALSE(isGrpcContentType("application/grp"));
}

TEST(GrpcWire, GrpcMessageIsPercentEncoded) {
  EXPECT_EQ(percentEncode("plain text: ok"), "plain text: ok");
  EXPECT_EQ(percentEncode("100%"), "100%25");
  EXPECT_EQ(percentEncode("line\nbreak"), "line%0Abreak");
  EXPECT_EQ(percentEncode("caf\xc3\xa9"), "caf%C3%A9");
  EXPECT_EQ(percentEncode(std::string("\0\x7f", 2)), "%00%7F");
}

}  // namespace
}  // namespace meshid::rpc
