// Result<T>: a value or an Error, the one way expected failures travel.
// Shaped like std::expected (not in GCC 12's C++20). Codes mirror gRPC's so a
// service maps a Result to a grpc::Status in one place.
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace meshid {

enum class Code {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

std::string_view codeName(Code code);

struct Error {
  Code code = Code::kUnknown;
  std::string message;

  static Error invalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Error notFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Error alreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Error permissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Error resourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Error failedPrecondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Error outOfRange(std::string m) { return {Code::kOutOfRange, std::move(m)}; }
  static Error internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Error unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Error unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }

  // Prefixes context ("loading ca-key.pem: ") while keeping the code.
  Error wrap(std::string_view context) const& {
    return {code, std::string(context) + ": " + message};
  }
};

// Broken invariants are programmer errors, not recoverable conditions.
[[noreturn]] void checkFailed(const char* expr, const char* file, int line);
#define MESHID_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::meshid::checkFailed(#cond, __FILE__, __LINE__))

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design, like expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    MESHID_CHECK(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    MESHID_CHECK(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    MESHID_CHECK(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const {
    MESHID_CHECK(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    MESHID_CHECK(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> okResult() {
  return {};
}

}  // namespace meshid

// Returns the error of a Result-valued expression from the enclosing function.
#define MESHID_RETURN_IF_ERROR(expr) \
  do {                               \
    auto meshid_r_ = (expr);         \
    if (!meshid_r_.ok()) {           \
      return meshid_r_.error();      \
    }                                \
  } while (false)

#define MESHID_CONCAT_INNER_(a, b) a##b
#define MESHID_CONCAT_(a, b) MESHID_CONCAT_INNER_(a, b)
// MESHID_ASSIGN_OR_RETURN(auto x, f()) declares x from f()'s value or returns its error.
#define MESHID_ASSIGN_OR_RETURN(lhs, expr) \
  MESHID_ASSIGN_OR_RETURN_IMPL_(MESHID_CONCAT_(meshid_r_, __LINE__), lhs, expr)
#define MESHID_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) {                                    \
    return tmp.error();                               \
  }                                                   \
  lhs = std::move(tmp).value()
