// Helpers shared by the unit tests: Result assertions that never abort on the
// wrong branch, and a private temporary directory per test.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "common/result.h"

namespace meshid {

// gtest prints a Code by name instead of as a bare integer.
inline void PrintTo(Code code, std::ostream* os) {
  *os << codeName(code);
}

namespace testing {

// The error of r, or {kOk, "<ok>"} when r holds a value, so a test that expects
// an error fails with a readable message instead of aborting in error().
template <class T>
Error errorOf(const Result<T>& r) {
  if (r.ok()) {
    return Error{Code::kOk, "<ok>"};
  }
  return r.error();
}

template <class T>
std::string messageOf(const Result<T>& r) {
  return r.ok() ? std::string("<ok>") : r.error().message;
}

// For setup steps inside helpers that cannot use ASSERT_*: gtest reports the
// exception as a failure of the test that called the helper.
template <class T>
T orThrow(Result<T> r, std::string_view what = "setup") {
  if (!r.ok()) {
    throw std::runtime_error(std::string(what) + ": " + r.error().message);
  }
  return std::move(r).value();
}
inline void orThrow(Result<void> r, std::string_view what = "setup") {
  if (!r.ok()) {
    throw std::runtime_error(std::string(what) + ": " + r.error().message);
  }
}

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "meshid-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace testing
}  // namespace meshid

#define MESHID_EXPECT_OK(expr)                                                \
  do {                                                                        \
    const auto& meshid_ok_ = (expr);                                          \
    EXPECT_TRUE(meshid_ok_.ok()) << ::meshid::testing::messageOf(meshid_ok_); \
  } while (false)

#define MESHID_ASSERT_OK(expr)                                                \
  do {                                                                        \
    const auto& meshid_ok_ = (expr);                                          \
    ASSERT_TRUE(meshid_ok_.ok()) << ::meshid::testing::messageOf(meshid_ok_); \
  } while (false)

// needle occurs in haystack; prints both otherwise.
#define MESHID_EXPECT_CONTAINS(haystack, needle) \
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, needle, haystack)
#define MESHID_EXPECT_NOT_CONTAINS(haystack, needle) \
  EXPECT_PRED_FORMAT2(::testing::IsNotSubstring, needle, haystack)
