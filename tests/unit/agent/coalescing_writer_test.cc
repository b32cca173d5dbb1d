#include "agent/coalescing_writer.h"

#include <gtest/gtest.h>

#include <string>

namespace meshid::agent {
namespace {

TEST(CoalescingWriter, OneWriteInFlightNewestWaitingMessageWins) {
  CoalescingWriter<std::string> w;
  const std::string* first = w.push("a");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(*first, "a");
  EXPECT_TRUE(w.writing());
  EXPECT_EQ(w.push("b"), nullptr) << "a write is in flight";
  EXPECT_EQ(w.push("c"), nullptr);
  const std::string* next = w.done();
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(*next, "c") << "b was replaced by the newer full state";
  EXPECT_EQ(w.done(), nullptr);
  EXPECT_FALSE(w.writing());
  const std::string* again = w.push("d");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(*again, "d");
}

}  // namespace
}  // namespace meshid::agent
