#include "common/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "unit/common/test_util.h"

namespace meshid {
namespace {

namespace fs = std::filesystem;
using meshid::testing::errorOf;
using meshid::testing::TempDir;

unsigned modeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return 0xffff;
  }
  return st.st_mode & 07777;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeRaw(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
}

// A permissive umask must not widen a secret, a strict one must not narrow a
// public file: the mode is exactly what was asked for.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }

 private:
  mode_t old_;
};

TEST(WriteFileAtomic, CreatesSecretFileOwnerOnly) {
  TempDir dir;
  UmaskGuard umask(0);
  MESHID_ASSERT_OK(writeFileAtomic(dir / "key.pem", "secret", kSecretFileMode));
  EXPECT_EQ(modeOf(dir / "key.pem"), 0600u);
  EXPECT_EQ(slurp(dir / "key.pem"), "secret");
}

TEST(WriteFileAtomic, CreatesPublicFileWorldReadable) {
  TempDir dir;
  UmaskGuard umask(077);
  MESHID_ASSERT_OK(writeFileAtomic(dir / "cert.pem", "public", kPublicFileMode));
  EXPECT_EQ(modeOf(dir / "cert.pem"), 0644u);
}

TEST(WriteFileAtomic, ReplacesContentAndMode) {
  TempDir dir;
  MESHID_ASSERT_OK(writeFileAtomic(dir / "f", "a much longer first version", kPublicFileMode));
  MESHID_ASSERT_OK(writeFileAtomic(dir / "f", "short", kSecretFileMode));
  EXPECT_EQ(slurp(dir / "f"), "short");
  EXPECT_EQ(modeOf(dir / "f"), 0600u);
}

TEST(WriteFileAtomic, ReplacesAnExistingWorldReadableFileWithoutWideningTheSecret) {
  TempDir dir;
  writeRaw(dir / "key.pem", "old");
  fs::permissions(dir / "key.pem", fs::perms(0666));
  MESHID_ASSERT_OK(writeFileAtomic(dir / "key.pem", "new", kSecretFileMode));
  EXPECT_EQ(modeOf(dir / "key.pem"), 0600u);
  EXPECT_EQ(slurp(dir / "key.pem"), "new");
}

TEST(WriteFileAtomic, WritesBinaryAndEmptyData) {
  TempDir dir;
  std::string bin("\0\x01\xff\n\r", 5);
  MESHID_ASSERT_OK(writeFileAtomic(dir / "bin", bin, kPublicFileMode));
  EXPECT_EQ(slurp(dir / "bin"), bin);
  MESHID_ASSERT_OK(writeFileAtomic(dir / "empty", "", kPublicFileMode));
  EXPECT_EQ(fs::file_size(dir / "empty"), 0u);
}

TEST(WriteFileAtomic, LeavesNoTemporaryFiles) {
  TempDir dir;
  MESHID_ASSERT_OK(writeFileAtomic(dir / "a", "1", kPublicFileMode));
  MESHID_ASSERT_OK(writeFileAtomic(dir / "a", "2", kPublicFileMode));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename(), "a");
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WriteFileAtomic, FailsNotFoundInMissingDirectory) {
  TempDir dir;
  auto r = writeFileAtomic(dir / "no-such-dir" / "f", "x", kPublicFileMode);
  EXPECT_EQ(errorOf(r).code, Code::kNotFound);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "no-such-dir");
  EXPECT_FALSE(fs::exists(dir / "no-such-dir"));
}

TEST(ReadFile, ReadsWholeFile) {
  TempDir dir;
  std::string data(100000, 'x');
  data[99999] = 'y';
  writeRaw(dir / "f", data);
  auto r = readFile(dir / "f", 100000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, data);
}

TEST(ReadFile, RefusesFileOverLimit) {
  TempDir dir;
  writeRaw(dir / "f", std::string(1025, 'x'));
  auto r = readFile(dir / "f", 1024);
  EXPECT_EQ(errorOf(r).code, Code::kResourceExhausted);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "1024");
  // The limit is inclusive.
  MESHID_EXPECT_OK(readFile(dir / "f", 1025));
}

TEST(ReadFile, RefusesUnboundedDevice) {
  // /dev/zero never ends: the cap is what stops the read.
  auto r = readFile("/dev/zero", 4096);
  EXPECT_EQ(errorOf(r).code, Code::kResourceExhausted);
}

TEST(ReadFile, MissingFileIsNotFound) {
  TempDir dir;
  auto r = readFile(dir / "absent.pem", 1024);
  EXPECT_EQ(errorOf(r).code, Code::kNotFound);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "absent.pem");
}

TEST(ReadFile, DirectoryIsInvalidArgument) {
  TempDir dir;
  EXPECT_EQ(errorOf(readFile(dir.path(), 1024)).code, Code::kInvalidArgument);
}

TEST(ReadFile, FollowsSymlinks) {
  TempDir dir;
  writeRaw(dir / "target", "data");
  fs::create_symlink("target", dir / "link");
  auto r = readFile(dir / "link", 1024);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "data");
}

}  // namespace
}  // namespace meshid
