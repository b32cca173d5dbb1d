#include "common/duration.h"

#include <gtest/gtest.h>

#include <string>

#include "common/clock.h"
#include "unit/common/test_util.h"

namespace meshid {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(*parseDuration("90s"), 90s);
  EXPECT_EQ(*parseDuration("10m"), 10min);
  EXPECT_EQ(*parseDuration("24h"), 24h);
  EXPECT_EQ(*parseDuration("30d"), 30 * 24h);
}

TEST(ParseDuration, AddsCompoundParts) {
  EXPECT_EQ(*parseDuration("1h30m"), 90min);
  EXPECT_EQ(*parseDuration("1d2h3m4s"), 24h + 2h + 3min + 4s);
  // Parts need not be in decreasing order or unique.
  EXPECT_EQ(*parseDuration("30s1m"), 90s);
}

TEST(ParseDuration, AcceptsHundredYearsExactly) {
  EXPECT_EQ(*parseDuration("36500d"), 36500 * 24h);
}

TEST(ParseDuration, RefusesEmpty) {
  EXPECT_EQ(errorOf(parseDuration("")).code, Code::kInvalidArgument);
}

TEST(ParseDuration, RefusesBareNumber) {
  auto r = parseDuration("10");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "missing unit");
}

TEST(ParseDuration, RefusesUnknownUnit) {
  auto r = parseDuration("1x");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "unknown unit 'x'");
  // Units are case-sensitive: "M" could mean months.
  EXPECT_FALSE(parseDuration("1M").ok());
  EXPECT_FALSE(parseDuration("1H").ok());
}

TEST(ParseDuration, RefusesNegative) {
  EXPECT_EQ(errorOf(parseDuration("-1h")).code, Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parseDuration("+1h")).code, Code::kInvalidArgument);
}

TEST(ParseDuration, RefusesZero) {
  auto r = parseDuration("0s");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "positive");
  EXPECT_FALSE(parseDuration("0d0h").ok());
}

TEST(ParseDuration, RefusesMalformed) {
  for (const char* text :
       {"h", "1h ", " 1h", "1 h", "1.5h", "1hh", "1h-", "1e3s", "0x10s", "1h\n"}) {
    EXPECT_EQ(errorOf(parseDuration(text)).code, Code::kInvalidArgument) << '"' << text << '"';
  }
  EXPECT_FALSE(parseDuration(std::string_view("1h\0", 3)).ok());
}

TEST(ParseDuration, RefusesMoreThanHundredYears) {
  EXPECT_EQ(errorOf(parseDuration("36501d")).code, Code::kOutOfRange);
  EXPECT_EQ(errorOf(parseDuration("36500d1s")).code, Code::kOutOfRange);
  EXPECT_EQ(errorOf(parseDuration("1000000h")).code, Code::kOutOfRange);
}

TEST(ParseDuration, RefusesNumbersThatWouldOverflow) {
  // Each of these overflows int64 if multiplied naively; all are "too long",
  // whatever the unit, and the message must not claim the number is missing.
  for (const char* text : {"9999999999s", "99999999999999999999999s", "9223372036854775807s",
                           "9223372036854775808d", "4000000000m"}) {
    auto r = parseDuration(text);
    EXPECT_EQ(errorOf(r).code, Code::kOutOfRange) << text << ": " << errorOf(r).message;
  }
}

TEST(ParseDuration, RefusesOverlongText) {
  std::string text;
  for (int i = 0; i < 40; ++i) {
    text += "1s";
  }
  EXPECT_EQ(errorOf(parseDuration(text)).code, Code::kInvalidArgument);
}

TEST(FormatDuration, UsesTheTwoLargestUnits) {
  EXPECT_EQ(formatDuration(45s), "45s");
  EXPECT_EQ(formatDuration(0s), "0s");
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(10min), "10m");
  EXPECT_EQ(formatDuration(23h + 59min + 59s), "23h59m");
  EXPECT_EQ(formatDuration(2h), "2h");
  EXPECT_EQ(formatDuration(14 * 24h + 2h + 5min), "14d2h");
  EXPECT_EQ(formatDuration(30 * 24h), "30d");
}

TEST(FormatDuration, MarksPastWithMinus) {
  EXPECT_EQ(formatDuration(-3min), "-3m");
  EXPECT_EQ(formatDuration(-(24h + 1h)), "-1d1h");
}

TEST(FormatDuration, OutputParsesBackWhenExact) {
  for (Seconds d : {Seconds(1), Seconds(59), Seconds(61), Seconds(3600), Seconds(5400),
                    Seconds(86400), Seconds(90000), Seconds(3650 * 86400)}) {
    std::string text = formatDuration(d);
    auto back = parseDuration(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.error().message;
    EXPECT_EQ(*back, d) << text;
  }
}

TEST(Rfc3339, FormatsUtcWithZ) {
  EXPECT_EQ(formatRfc3339(fromUnixSeconds(0)), "1970-01-01T00:00:00Z");
  // 2026-11-25T09:06:24Z, computed by `date -u -d @1795597584`.
  EXPECT_EQ(formatRfc3339(fromUnixSeconds(1795597584)), "2026-11-25T09:06:24Z");
}

TEST(Rfc3339, RoundTrips) {
  for (int64_t s : {int64_t{0}, int64_t{951782400} /* 2000-02-29 */, int64_t{1795597584},
                    int64_t{2524607999} /* 2049-12-31T23:59:59Z */}) {
    auto back = parseRfc3339(formatRfc3339(fromUnixSeconds(s)));
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(toUnixSeconds(*back), s);
  }
}

TEST(Rfc3339, AppliesNumericOffsets) {
  int64_t utc = toUnixSeconds(*parseRfc3339("2026-11-25T09:06:24Z"));
  EXPECT_EQ(toUnixSeconds(*parseRfc3339("2026-11-25T10:06:24+01:00")), utc);
  EXPECT_EQ(toUnixSeconds(*parseRfc3339("2026-11-25T03:36:24-05:30")), utc);
  EXPECT_EQ(toUnixSeconds(*parseRfc3339("2026-11-25T09:06:24+00:00")), utc);
}

TEST(Rfc3339, AcceptsLowercaseSeparatorsAndDropsFraction) {
  int64_t utc = toUnixSeconds(*parseRfc3339("2026-11-25T09:06:24Z"));
  EXPECT_EQ(toUnixSeconds(*parseRfc3339("2026-11-25t09:06:24z")), utc);
  EXPECT_EQ(toUnixSeconds(*parseRfc3339("2026-11-25T09:06:24.999999Z")), utc);
}

TEST(Rfc3339, RefusesBadInputs) {
  for (const char* text : {
           "",
           "2026-11-25",
           "2026-11-25T09:06:24",        // no zone
           "2026-11-25T09:06:24+0100",   // offset without colon
           "2026-11-25T09:06:24 UTC",    // zone name
           "2026-11-25T09:06:24Zjunk",   // trailing bytes
           "2026/11/25T09:06:24Z",       // wrong date separator
           "2026-11-25X09:06:24Z",       // wrong date/time separator
           "2026-13-01T00:00:00Z",       // month 13
           "2026-00-10T00:00:00Z",       // month 0
           "2026-11-00T00:00:00Z",       // day 0
           "2026-11-32T00:00:00Z",       // day 32
           "2026-11-25T24:00:00Z",       // hour 24
           "2026-11-25T09:60:00Z",       // minute 60
           "2026-11-25T09:06:61Z",       // second 61
           "2026-11-25T09:06:24+24:00",  // offset hour 24
           "2026-11-25T09:06:24+01:60",  // offset minute 60
           "2026-1a-25T09:06:24Z",       // letter in a number
           "-026-11-25T09:06:24Z",       // sign in the year
       }) {
    auto r = parseRfc3339(text);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << '"' << text << '"';
  }
  EXPECT_FALSE(parseRfc3339(std::string(100, '9')).ok());
}

TEST(Rfc3339, RefusesYearsOutsideTheClockRange) {
  // system_clock's 64-bit nanoseconds end in 2262; meshid stops at 2200.
  for (const char* text : {"1969-12-31T23:59:59Z", "2201-01-01T00:00:00Z", "6026-11-25T09:06:24Z",
                           "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"}) {
    EXPECT_EQ(errorOf(parseRfc3339(text)).code, Code::kOutOfRange) << text;
  }
  MESHID_EXPECT_OK(parseRfc3339("1970-01-01T00:00:00Z"));
  auto last = parseRfc3339("2200-12-31T23:59:59Z");
  ASSERT_TRUE(last.ok()) << last.error().message;
  EXPECT_EQ(formatRfc3339(*last), "2200-12-31T23:59:59Z");
}

TEST(Rfc3339, RefusesDaysPastTheEndOfTheMonth) {
  // Normalizing "02-31" to March 3 would move an --at silently by days.
  for (const char* text : {"2026-02-29T00:00:00Z", "2026-02-30T00:00:00Z", "2026-04-31T00:00:00Z",
                           "2100-02-29T00:00:00Z"}) {
    EXPECT_EQ(errorOf(parseRfc3339(text)).code, Code::kInvalidArgument) << text;
  }
  // Leap days that exist are fine.
  MESHID_EXPECT_OK(parseRfc3339("2028-02-29T00:00:00Z"));
  MESHID_EXPECT_OK(parseRfc3339("2000-02-29T00:00:00Z"));
}

}  // namespace
}  // namespace meshid
