#include "agent/file_sink.h"

#include <fmt/format.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <optional>
#include <sstream>

#include <openssl/crypto.h>

#include "common/file_util.h"

extern char** environ;

namespace meshid::agent {

Result<void> writeSink(const FileSink& sink, const IssuedSvid& svid, const Bundle& bundle) {
  std::error_code ec;
  std::filesystem::create_directories(sink.dir, ec);
  MESHID_RETURN_IF_ERROR(
      writeFileAtomic(sink.dir / sink.bundle_file, bundle.pem(), kPublicFileMode));
  MESHID_RETURN_IF_ERROR(writeFileAtomic(sink.dir / sink.key_file, svid.key_pem, kSecretFileMode));
  MESHID_RETURN_IF_ERROR(
      writeFileAtomic(sink.dir / sink.cert_file, svid.chain_pem, kPublicFileMode));
  if (sink.combined_file.empty())
    return okResult();
  std::string combined = svid.key_pem + svid.chain_pem;
  auto r = writeFileAtomic(sink.dir / sink.combined_file, combined, kSecretFileMode);
  OPENSSL_cleanse(combined.data(), combined.size());
  return r;
}

Result<void> runCommand(const std::string& command, std::chrono::milliseconds timeout) {
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  // Its own process group, so a timeout kills everything the command started.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  int rc = posix_spawn(&pid, "/bin/sh", nullptr, &attr, const_cast<char**>(argv), environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return Error::internal(fmt::format("cannot start /bin/sh: {}", std::strerror(rc)));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR)
      return Error::internal(fmt::format("waitpid: {}", std::strerror(errno)));
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return Error{
          Code::kDeadlineExceeded,
          fmt::format("command did not finish within {} ms and was killed", timeout.count())};
    }
    usleep(10'000);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return okResult();
  if (WIFEXITED(status))
    return Error::internal(fmt::format("command exited with status {}", WEXITSTATUS(status)));
  return Error::internal(fmt::format("command was killed by signal {}", WTERMSIG(status)));
}

std::optional<SystemTime> processStartTime(pid_t pid) {
  // Field 22 of /proc/<pid>/stat: start time in clock ticks after boot.
  auto stat = readFile(fmt::format("/proc/{}/stat", pid), 4096);
  auto boot = readFile("/proc/stat", 1 << 16);
  if (!stat.ok() || !boot.ok())
    return std::nullopt;
  size_t close = stat->rfind(')');  // the command name may hold spaces
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields(stat->substr(close + 2));
  std::string field;
  unsigned long long ticks = 0;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22)
      ticks = std::strtoull(field.c_str(), nullptr, 10);
  }
  size_t at = boot->find("\nbtime ");
  if (ticks == 0 || at == std::string::npos)
    return std::nullopt;
  long long btime = std::strtoll(boot->c_str() + at + 7, nullptr, 10);
  double seconds = static_cast<double>(btime) +
                   static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::duration<double>(seconds)));
}

Result<void> signalPidFile(const std::filesystem::path& pid_file, int signal) {
  MESHID_ASSIGN_OR_RETURN(std::string text, readFile(pid_file, 64));
  char* end = nullptr;
  long pid = std::strtol(text.c_str(), &end, 10);
  while (end && (*end == '\n' || *end == ' '))
    ++end;
  if (pid <= 1 || !end || *end != '\0')
    return Error::invalidArgument(fmt::format("{} holds no valid pid", pid_file.string()));
  // A pid file left behind by a process that died names a pid the kernel may
  // have given to someone else since: never signal a process that started
  // after the pid file was written.
  auto started = processStartTime(static_cast<pid_t>(pid));
  struct stat st {};
  if (started && ::stat(pid_file.c_str(), &st) == 0) {
    SystemTime written = std::chrono::system_clock::from_time_t(st.st_mtim.tv_sec);
    if (*started > written + std::chrono::seconds(2)) {
      return Error::failedPrecondition(
          fmt::format("{} is stale: pid {} belongs to a process started after the file was written",
                      pid_file.string(), pid));
    }
  }
  if (kill(static_cast<pid_t>(pid), signal) != 0) {
    return Error::unavailable(fmt::format("cannot signal pid {}: {}", pid, std::strerror(errno)));
  }
  return okResult();
}

FileSinks::FileSinks(const AgentConfig& config, SecretCache& cache, AgentMetrics& metrics)
    : config_(config), cache_(cache), metrics_(metrics) {
  thread_ = std::thread([this] { hookLoop(); });
}

FileSinks::~FileSinks() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void FileSinks::hooksFor(const FileSink& sink, const std::string& what) {
  if (!sink.reload_command.empty())
    enqueue({what, sink.reload_command, {}, 0});
  if (!sink.signal_pid_file.empty())
    enqueue({what, {}, sink.signal_pid_file, sink.signal});
}

void FileSinks::svidChanged(const IssuedSvid& svid) {
  auto bundle = cache_.bundle();
  if (!bundle)
    return;
  for (const auto& e : config_.entries) {
    if (!e.file_sink || !(e.spiffe_id == svid.spiffe_id))
      continue;
    Result<void> r = okResult();
    {
      std::lock_guard lock(write_mu_);
      r = writeSink(*e.file_sink, svid, *bundle);
    }
    metrics_.sinkWrite(r.ok());
    if (!r.ok()) {
      spdlog::error("file sink {} for {} not written: {}", e.file_sink->dir.string(),
                    svid.spiffe_id.str(), r.error().message);
      continue;
    }
    spdlog::info("file sink {} written for {} serial {}", e.file_sink->dir.string(),
                 svid.spiffe_id.str(), svid.serial_hex);
    hooksFor(*e.file_sink, e.file_sink->dir.string());
  }
}

void FileSinks::bundleChanged(const Bundle& bundle) {
  for (const auto& e : config_.entries) {
    if (!e.file_sink)
      continue;
    Result<void> r = okResult();
    {
      std::lock_guard lock(write_mu_);
      std::error_code ec;
      std::filesystem::create_directories(e.file_sink->dir, ec);
      r = writeFileAtomic(e.file_sink->dir / e.file_sink->bundle_file, bundle.pem(),
                          kPublicFileMode);
    }
    metrics_.sinkWrite(r.ok());
    if (!r.ok()) {
      spdlog::error("bundle file in {} not written: {}", e.file_sink->dir.string(),
                    r.error().message);
      continue;
    }
    hooksFor(*e.file_sink, e.file_sink->dir.string());
  }
  for (const auto& b : config_.bundle_sinks) {
    Result<void> r = okResult();
    {
      std::lock_guard lock(write_mu_);
      std::error_code ec;
      std::filesystem::create_directories(b.path.parent_path(), ec);
      r = writeFileAtomic(b.path, bundle.pem(), kPublicFileMode);
    }
    metrics_.sinkWrite(r.ok());
    if (!r.ok()) {
      spdlog::error("bundle sink {} not written: {}", b.path.string(), r.error().message);
      continue;
    }
    spdlog::info("bundle sink {} written, bundle version {}", b.path.string(), bundle.version);
    if (!b.reload_command.empty())
      enqueue({b.path.string(), b.reload_command, {}, 0});
  }
}

void FileSinks::enqueue(Hook hook) {
  {
    std::lock_guard lock(mu_);
    hooks_.push_back(std::move(hook));
  }
  cv_.notify_all();
}

void FileSinks::hookLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !hooks_.empty(); });
    if (stopping_)
      return;
    Hook h = std::move(hooks_.front());
    hooks_.pop_front();
    lock.unlock();
    Result<void> r = h.command.empty() ? signalPidFile(h.pid_file, h.signal)
                                       : runCommand(h.command, std::chrono::seconds(30));
    metrics_.hookRun(r.ok());
    if (r.ok()) {
      spdlog::info("reload hook for {} ran", h.what);
    } else {
      spdlog::warn("reload hook for {} failed: {}", h.what, r.error().message);
    }
    lock.lock();
  }
}

}  // namespace meshid::agent
