#include "common/duration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <ctime>

namespace meshid {
namespace {

// Nothing meshid handles lives longer than a century; the cap also keeps the
// arithmetic far from overflow.
constexpr int64_t kMaxDurationSeconds = int64_t{100} * 365 * 24 * 3600;

bool readNumber(std::string_view text, size_t& pos, int64_t& out) {
  size_t start = pos;
  int64_t v = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
    // Saturate rather than fail: the caller reports any number past the cap as
    // out of range, whatever its unit.
    v = std::min(v * 10 + (text[pos] - '0'), kMaxDurationSeconds + 1);
    ++pos;
  }
  out = v;
  return pos > start;
}

}  // namespace

Result<std::chrono::seconds> parseDuration(std::string_view text) {
  if (text.empty()) {
    return Error::invalidArgument("empty duration");
  }
  if (text.size() > 64) {
    return Error::invalidArgument("duration too long");
  }
  int64_t total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    int64_t n = 0;
    if (!readNumber(text, pos, n)) {
      return Error::invalidArgument(
          fmt::format("invalid duration \"{}\": expected a number followed by s, m, h or d", text));
    }
    if (pos == text.size()) {
      return Error::invalidArgument(
          fmt::format("invalid duration \"{}\": missing unit (s, m, h or d)", text));
    }
    int64_t unit = 0;
    switch (text[pos]) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        return Error::invalidArgument(
            fmt::format("invalid duration \"{}\": unknown unit '{}'", text, text[pos]));
    }
    ++pos;
    if (n > kMaxDurationSeconds / unit || total + n * unit > kMaxDurationSeconds) {
      return Error::outOfRange(fmt::format("duration \"{}\" is longer than 100 years", text));
    }
    total += n * unit;
  }
  if (total <= 0) {
    return Error::invalidArgument(fmt::format("duration \"{}\" must be positive", text));
  }
  return std::chrono::seconds(total);
}

std::string formatDuration(std::chrono::seconds d) {
  int64_t s = d.count();
  std::string sign;
  if (s < 0) {
    sign = "-";
    s = -s;
  }
  int64_t days = s / 86400, hours = (s % 86400) / 3600, mins = (s % 3600) / 60, secs = s % 60;
  if (days > 0) {
    return hours ? fmt::format("{}{}d{}h", sign, days, hours) : fmt::format("{}{}d", sign, days);
  }
  if (hours > 0) {
    return mins ? fmt::format("{}{}h{}m", sign, hours, mins) : fmt::format("{}{}h", sign, hours);
  }
  if (mins > 0) {
    return secs ? fmt::format("{}{}m{}s", sign, mins, secs) : fmt::format("{}{}m", sign, mins);
  }
  return fmt::format("{}{}s", sign, secs);
}

std::string formatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<std::chrono::system_clock::time_point> parseRfc3339(std::string_view text) {
  auto bad = [&] {
    return Error::invalidArgument(
        fmt::format("invalid time \"{}\": expected RFC 3339, e.g. 2026-01-02T15:04:05Z", text));
  };
  if (text.size() < 20 || text.size() > 40) {
    return bad();
  }
  auto digits = [&](size_t at, size_t n, int& out) {
    out = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
        return false;
      }
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  std::tm tm{};
  int year = 0, mon = 0;
  if (!digits(0, 4, year) || text[4] != '-' || !digits(5, 2, mon) || text[7] != '-' ||
      !digits(8, 2, tm.tm_mday) || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      !digits(11, 2, tm.tm_hour) || text[13] != ':' || !digits(14, 2, tm.tm_min) ||
      text[16] != ':' || !digits(17, 2, tm.tm_sec)) {
    return bad();
  }
  // system_clock counts nanoseconds in 64 bits: it ends in 2262.
  if (year < 1970 || year > 2200) {
    return Error::outOfRange(fmt::format("time \"{}\" is outside 1970..2200", text));
  }
  if (mon < 1 || mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return bad();
  }
  // timegm would roll "02-30" over into March: refuse days the month lacks.
  constexpr int kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (tm.tm_mday > kDaysInMonth[mon - 1] || (mon == 2 && !leap && tm.tm_mday > 28)) {
    return bad();
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      ++pos;  // sub-second precision is dropped
    }
  }
  int64_t offset = 0;
  std::string_view zone = text.substr(pos);
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int oh = 0, om = 0;
    if (!digits(pos + 1, 2, oh) || !digits(pos + 4, 2, om) || oh > 23 || om > 59) {
      return bad();
    }
    offset = (oh * 3600 + om * 60) * (zone[0] == '+' ? 1 : -1);
  } else {
    return bad();
  }
  std::time_t t = timegm(&tm);
  return std::chrono::system_clock::from_time_t(t - offset);
}

}  // namespace meshid
