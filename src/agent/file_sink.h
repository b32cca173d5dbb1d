// Identities as files, for software that reads PEM files (nginx, databases):
// what spiffe-helper and certmonger's post-save hooks do. Each file is
// replaced atomically (temp + fsync + rename); then a reload command runs or
// a pid is signalled. Hooks run one at a time on their own thread, so a slow
// command never delays a rotation; their failures are logged and counted.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/secret_cache.h"
#include "common/result.h"

namespace meshid::agent {

// Writes bundle, key (0600), chain and the combined file, in that order, so
// new roots are in place before a chain that needs them. Separate key and
// chain files are two renames: a reader that opens them between the two can
// see a mismatched pair, so readers should reload on the hook (nginx) or use
// the combined file (curl, HAProxy).
Result<void> writeSink(const FileSink& sink, const IssuedSvid& svid, const Bundle& bundle);

// Runs `sh -c command`; a non-zero exit, a signal or exceeding timeout (the
// process is killed) is an error carrying the exit status.
Result<void> runCommand(const std::string& command, std::chrono::milliseconds timeout);

// When a process started (from /proc), or nullopt when it is gone.
std::optional<SystemTime> processStartTime(pid_t pid);

// Sends signal to the pid written in pid_file. A pid file older than the
// process now holding that pid is stale and refused: its pid was reused.
Result<void> signalPidFile(const std::filesystem::path& pid_file, int signal);

class FileSinks {
 public:
  FileSinks(const AgentConfig& config, SecretCache& cache, AgentMetrics& metrics);
  ~FileSinks();

  // A new SVID for an identity (writes its sink, if it has one).
  void svidChanged(const IssuedSvid& svid);
  // A new bundle: rewrites every bundle file.
  void bundleChanged(const Bundle& bundle);

 private:
  struct Hook {
    std::string what;  // for logs
    std::string command;
    std::filesystem::path pid_file;
    int signal = 0;
  };
  void enqueue(Hook hook);
  void hookLoop();
  void hooksFor(const FileSink& sink, const std::string& what);

  const AgentConfig& config_;
  SecretCache& cache_;
  AgentMetrics& metrics_;
  std::mutex write_mu_;  // one writer of the files at a time

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Hook> hooks_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::thread thread_;
};

}  // namespace meshid::agent
