#include "common/glibc_tunables.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(GlibcTunables, FindsANameAmongPairs) {
  EXPECT_EQ(findTunable("glibc.malloc.tcache_count=64", kTcacheCountTunable), "64");
  EXPECT_EQ(
      findTunable("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=10:glibc.pthread.rseq=0",
                  kTcacheCountTunable),
      "10");
  // glibc applies pairs in order, so the last one is what is in force.
  EXPECT_EQ(
      findTunable("glibc.malloc.tcache_count=1:glibc.malloc.tcache_count=2", kTcacheCountTunable),
      "2");
  EXPECT_EQ(findTunable("glibc.malloc.tcache_count=", kTcacheCountTunable), "");
}

TEST(GlibcTunables, OtherNamesAndMalformedPairsAreNotMatches) {
  for (const char* s :
       {"", ":", "::::", "glibc.malloc.tcache_count", "glibc.malloc.tcache_counts=5",
        "xglibc.malloc.tcache_count=5", "glibc.malloc.tcache_max=512", "=glibc.malloc.tcache_count",
        "glibc.malloc.arena_max=2:"}) {
    EXPECT_FALSE(findTunable(s, kTcacheCountTunable).has_value()) << s;
  }
}

TEST(GlibcTunables, AppendsToWhatIsThere) {
  EXPECT_EQ(withTunable(nullptr, kTcacheCountTunable, "64"), "glibc.malloc.tcache_count=64");
  EXPECT_EQ(withTunable("", kTcacheCountTunable, "64"), "glibc.malloc.tcache_count=64");
  EXPECT_EQ(withTunable("glibc.malloc.arena_max=2", kTcacheCountTunable, "64"),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=64");
  std::string long_value(100000, 'x');
  std::string out = withTunable(long_value.c_str(), kTcacheCountTunable, "7");
  EXPECT_EQ(findTunable(out, kTcacheCountTunable), "7");
}

}  // namespace
}  // namespace meshid
