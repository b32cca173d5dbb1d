// Each SDS rule of PROTOCOLS.md §2, on the pure stream state machine.
#include "agent/sds_protocol.h"

#include <gtest/gtest.h>

#include <map>

namespace meshid::agent {
namespace {

class SdsProtocolTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> versions_;  // what exists now
  SdsStreamState stream_;

  SdsStreamState::Lookup lookup() {
    return [this](const std::string& name) -> std::optional<std::string> {
      auto it = versions_.find(name);
      if (it == versions_.end())
        return std::nullopt;
      return it->second;
    };
  }
  std::optional<SdsSend> request(std::vector<std::string> names, std::string version = "",
                                 std::string nonce = "", bool nack = false) {
    return stream_.onRequest({std::move(version), std::move(names), std::move(nonce), nack},
                             lookup());
  }
};

TEST_F(SdsProtocolTest, FirstRequestGetsTheCurrentStateAtOnce) {
  versions_ = {{"default", "s1"}};
  auto send = request({"default"});
  ASSERT_TRUE(send);
  EXPECT_EQ(send->names, std::vector<std::string>{"default"});
  EXPECT_EQ(send->version_info, "s1");
  EXPECT_FALSE(send->nonce.empty());
}

TEST_F(SdsProtocolTest, AckAndNackAreNotAnswered) {
  versions_ = {{"default", "s1"}};
  auto first = request({"default"});
  ASSERT_TRUE(first);
  EXPECT_FALSE(request({"default"}, "s1", first->nonce)) << "an ACK gets no reply";
  EXPECT_EQ(stream_.acks(), 1);
  EXPECT_EQ(stream_.ackedVersion(), "s1");
  EXPECT_FALSE(request({"default"}, "", first->nonce, true)) << "a NACK gets no reply";
  EXPECT_EQ(stream_.nacks(), 1);
}

TEST_F(SdsProtocolTest, NackedContentIsNeverResentButNewContentIs) {
  versions_ = {{"default", "s1"}};
  auto first = request({"default"});
  ASSERT_TRUE(first);
  EXPECT_FALSE(request({"default"}, "", first->nonce, true));
  EXPECT_FALSE(stream_.onChange(lookup())) << "same content after a NACK";
  versions_["default"] = "s2";
  auto pushed = stream_.onChange(lookup());
  ASSERT_TRUE(pushed) << "a rotation is pushed even after a NACK";
  EXPECT_EQ(pushed->version_info, "s2");
  EXPECT_NE(pushed->nonce, first->nonce);
}

TEST_F(SdsProtocolTest, StaleNonceIsIgnored) {
  versions_ = {{"default", "s1"}};
  auto first = request({"default"});
  versions_["default"] = "s2";
  auto second = stream_.onChange(lookup());
  ASSERT_TRUE(first && second);
  // The ACK of the first response arrives after the second was sent: stale.
  EXPECT_FALSE(request({"default"}, "s1", first->nonce));
  EXPECT_EQ(stream_.staleIgnored(), 1);
  EXPECT_EQ(stream_.acks(), 0);
  EXPECT_FALSE(request({"default", "ROOTCA"}, "s1", "made-up"))
      << "even a changed name list with a stale nonce is ignored";
  EXPECT_FALSE(request({"default"}, "s2", second->nonce));
  EXPECT_EQ(stream_.ackedVersion(), "s2");
}

TEST_F(SdsProtocolTest, HoldsUntilTheSecretExistsThenPushes) {
  EXPECT_FALSE(request({"default"})) << "nothing yet: no response, no error";
  EXPECT_FALSE(stream_.onChange(lookup()));
  versions_["other"] = "x";
  EXPECT_FALSE(stream_.onChange(lookup())) << "a change to a name not asked for";
  versions_["default"] = "s1";
  auto pushed = stream_.onChange(lookup());
  ASSERT_TRUE(pushed);
  EXPECT_EQ(pushed->names, std::vector<std::string>{"default"});
}

TEST_F(SdsProtocolTest, ChangesArePushedUnaskedOnlyWhenContentChanges) {
  versions_ = {{"default", "s1"}, {"ROOTCA", "b1"}};
  auto first = request({"default"});
  ASSERT_TRUE(first);
  EXPECT_FALSE(request({"default"}, "s1", first->nonce));
  versions_["ROOTCA"] = "b2";
  EXPECT_FALSE(stream_.onChange(lookup())) << "ROOTCA changed, this stream asked for default";
  versions_["default"] = "s2";
  auto push = stream_.onChange(lookup());
  ASSERT_TRUE(push);
  EXPECT_EQ(push->version_info, "s2");
  EXPECT_FALSE(stream_.onChange(lookup())) << "no resend of what was just sent";
}

TEST_F(SdsProtocolTest, ReconnectWithVersionButEmptyNonceGetsStateAtOnce) {
  versions_ = {{"default", "s1"}};
  SdsStreamState fresh;
  auto send = fresh.onRequest({"s1", {"default"}, "", false}, lookup());
  ASSERT_TRUE(send) << "a new stream always gets the current state, even the same version";
  EXPECT_EQ(send->version_info, "s1");
}

TEST_F(SdsProtocolTest, ChangedNamesAreAnsweredAtOnce) {
  versions_ = {{"default", "s1"}, {"ROOTCA", "b1"}};
  auto first = request({"default"});
  ASSERT_TRUE(first);
  auto second = request({"default", "ROOTCA"}, "s1", first->nonce);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->names, (std::vector<std::string>{"default", "ROOTCA"}));
  EXPECT_EQ(second->version_info, "default=s1,ROOTCA=b1");
}

TEST_F(SdsProtocolTest, SeveralNamesComeInOneResponseWithThoseThatExist) {
  versions_ = {{"ROOTCA", "b1"}};
  auto send = request({"default", "ROOTCA"});
  ASSERT_TRUE(send);
  EXPECT_EQ(send->names, std::vector<std::string>{"ROOTCA"});
  versions_["default"] = "s1";
  auto all = stream_.onChange(lookup());
  ASSERT_TRUE(all);
  EXPECT_EQ(all->names, (std::vector<std::string>{"default", "ROOTCA"}));
}

TEST_F(SdsProtocolTest, NoncesAreUniquePerResponse) {
  versions_ = {{"default", "s0"}};
  std::set<std::string> nonces;
  auto first = request({"default"});
  ASSERT_TRUE(first);
  nonces.insert(first->nonce);
  for (int i = 1; i <= 50; ++i) {
    versions_["default"] = "s" + std::to_string(i);
    auto s = stream_.onChange(lookup());
    ASSERT_TRUE(s);
    EXPECT_TRUE(nonces.insert(s->nonce).second);
  }
}

}  // namespace
}  // namespace meshid::agent
