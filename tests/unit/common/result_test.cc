#include "common/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "unit/common/test_util.h"

namespace meshid {
namespace {

Result<int> parsePositive(int v) {
  if (v <= 0) {
    return Error::invalidArgument("not positive");
  }
  return v;
}

// Uses MESHID_ASSIGN_OR_RETURN: doubles a positive value, passes errors up.
Result<int> doublePositive(int v) {
  MESHID_ASSIGN_OR_RETURN(int x, parsePositive(v));
  return x * 2;
}

int side_effects = 0;
Result<void> countThenFail(bool fail) {
  ++side_effects;
  if (fail) {
    return Error::notFound("missing thing");
  }
  return okResult();
}

// Uses MESHID_RETURN_IF_ERROR: stops at the first failure.
Result<void> twoSteps(bool fail_first) {
  MESHID_RETURN_IF_ERROR(countThenFail(fail_first));
  MESHID_RETURN_IF_ERROR(countThenFail(false));
  return okResult();
}

TEST(Result, HoldsValue) {
  Result<std::string> r = std::string("hello");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(*r, "hello");
  EXPECT_EQ(r->size(), 5u);
}

TEST(Result, HoldsError) {
  Result<std::string> r = Error::permissionDenied("no entry for spiffe://td/x");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error().code, Code::kPermissionDenied);
  EXPECT_EQ(r.error().message, "no entry for spiffe://td/x");
}

TEST(Result, MovesOutMoveOnlyValue) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(Result, VoidResultIsOkByDefaultAndCarriesError) {
  Result<void> ok = okResult();
  EXPECT_TRUE(ok.ok());
  Result<void> bad = Error::unavailable("peer gone");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Code::kUnavailable);
  EXPECT_EQ(bad.error().message, "peer gone");
}

TEST(Result, NamedConstructorsPickTheirCode) {
  EXPECT_EQ(Error::invalidArgument("").code, Code::kInvalidArgument);
  EXPECT_EQ(Error::notFound("").code, Code::kNotFound);
  EXPECT_EQ(Error::alreadyExists("").code, Code::kAlreadyExists);
  EXPECT_EQ(Error::permissionDenied("").code, Code::kPermissionDenied);
  EXPECT_EQ(Error::resourceExhausted("").code, Code::kResourceExhausted);
  EXPECT_EQ(Error::failedPrecondition("").code, Code::kFailedPrecondition);
  EXPECT_EQ(Error::outOfRange("").code, Code::kOutOfRange);
  EXPECT_EQ(Error::internal("").code, Code::kInternal);
  EXPECT_EQ(Error::unavailable("").code, Code::kUnavailable);
  EXPECT_EQ(Error::unauthenticated("").code, Code::kUnauthenticated);
}

TEST(Result, WrapPrefixesContextAndKeepsCode) {
  Error e = Error::notFound("no such file");
  Error wrapped = e.wrap("loading ca-key.pem");
  EXPECT_EQ(wrapped.code, Code::kNotFound);
  EXPECT_EQ(wrapped.message, "loading ca-key.pem: no such file");
  EXPECT_EQ(e.message, "no such file");  // the original is untouched
}

TEST(Result, CodeNamesMatchGrpc) {
  // Values and names are gRPC's (grpc/status.h), so mapping to grpc::Status is a cast.
  EXPECT_EQ(static_cast<int>(Code::kInvalidArgument), 3);
  EXPECT_EQ(static_cast<int>(Code::kFailedPrecondition), 9);
  EXPECT_EQ(static_cast<int>(Code::kUnauthenticated), 16);
  EXPECT_EQ(codeName(Code::kOk), "OK");
  EXPECT_EQ(codeName(Code::kInvalidArgument), "INVALID_ARGUMENT");
  EXPECT_EQ(codeName(Code::kFailedPrecondition), "FAILED_PRECONDITION");
  EXPECT_EQ(codeName(Code::kResourceExhausted), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(codeName(Code::kUnauthenticated), "UNAUTHENTICATED");
  EXPECT_EQ(codeName(static_cast<Code>(99)), "UNKNOWN");
}

TEST(Result, CodeNamesAreDistinct) {
  std::set<std::string_view> names;
  for (int c = 0; c <= 16; ++c) {
    names.insert(codeName(static_cast<Code>(c)));
  }
  EXPECT_EQ(names.size(), 17u);
}

TEST(Result, AssignOrReturnPassesValueAndError) {
  Result<int> good = doublePositive(21);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  Result<int> bad = doublePositive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "not positive");
}

TEST(Result, ReturnIfErrorStopsAtFirstFailure) {
  side_effects = 0;
  Result<void> bad = twoSteps(true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Code::kNotFound);
  EXPECT_EQ(side_effects, 1);

  side_effects = 0;
  MESHID_EXPECT_OK(twoSteps(false));
  EXPECT_EQ(side_effects, 2);
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<int> r = Error::internal("boom");
  EXPECT_DEATH((void)r.value(), "check failed");
}

TEST(ResultDeathTest, ErrorOfValueAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<int> r = 1;
  EXPECT_DEATH((void)r.error(), "check failed");
}

}  // namespace
}  // namespace meshid
