#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace meshid {
namespace {

Error errnoError(std::string_view what, const std::filesystem::path& path) {
  int e = errno;
  Code code = (e == ENOENT)                 ? Code::kNotFound
              : (e == EACCES || e == EPERM) ? Code::kPermissionDenied
                                            : Code::kInternal;
  return Error{code, fmt::format("{} {}: {}", what, path.string(), std::strerror(e))};
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

Result<std::string> readAll(int fd, const std::filesystem::path& name, size_t max_bytes) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errnoError("cannot read", name);
    }
    if (n == 0) {
      break;
    }
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Error::resourceExhausted(
          fmt::format("{} is larger than the limit of {} bytes", name.string(), max_bytes));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<std::string> readFile(const std::filesystem::path& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return errnoError("cannot open", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Error::invalidArgument(fmt::format("{} is a directory", path.string()));
  }
  return readAll(fd.get(), path, max_bytes);
}

Result<std::string> readStdin(size_t max_bytes) {
  return readAll(0, "standard input", max_bytes);
}

Result<void> writeFileAtomic(const std::filesystem::path& path, std::string_view data,
                             unsigned mode) {
  std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int raw = ::mkstemp(tmpl.data());  // created 0600
  if (raw < 0) {
    return errnoError("cannot create temporary file in", dir);
  }
  Fd fd(raw);
  auto fail = [&](std::string_view what) {
    Error e = errnoError(what, tmpl);
    ::unlink(tmpl.c_str());
    return e;
  };
  if (::fchmod(fd.get(), mode) != 0) {
    return fail("cannot set mode of");
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("cannot write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    return fail("cannot sync");
  }
  if (::close(fd.release()) != 0) {
    return fail("cannot close");
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    return fail("cannot rename");
  }
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) {
    ::fsync(dfd.get());  // best effort: the rename is durable once the directory is
  }
  return okResult();
}

}  // namespace meshid
