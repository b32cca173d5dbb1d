#include "agent/file_sink.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#include "common/file_util.h"
#include "unit/common/test_util.h"

namespace meshid::agent {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::TempDir;

std::shared_ptr<IssuedSvid> svid() {
  auto s = std::make_shared<IssuedSvid>(pki::SpiffeId::parse("spiffe://td/ns/a/sa/b").value());
  s->chain_pem = "CHAIN\n";
  s->key_pem = "KEY\n";
  s->serial_hex = "01";
  return s;
}

Bundle bundle() {
  Bundle b;
  b.version = 3;
  b.roots_pem = {"ROOT1\n", "ROOT2\n"};
  return b;
}

unsigned modeOf(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

TEST(FileSink, WritesChainKeyAndBundleWithModes) {
  TempDir dir;
  FileSink sink{.dir = dir / "nested/certs"};
  MESHID_ASSERT_OK(writeSink(sink, *svid(), bundle()));
  EXPECT_EQ(*readFile(sink.dir / "cert-chain.pem", 100), "CHAIN\n");
  EXPECT_EQ(*readFile(sink.dir / "key.pem", 100), "KEY\n");
  EXPECT_EQ(*readFile(sink.dir / "root-cert.pem", 100), "ROOT1\nROOT2\n");
  EXPECT_EQ(modeOf(sink.dir / "key.pem"), 0600u);
  EXPECT_EQ(modeOf(sink.dir / "cert-chain.pem"), 0644u);
  // No temp files left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(sink.dir), {}), 3);
}

TEST(FileSink, CombinedFileHoldsKeyThenChainOwnerOnly) {
  TempDir dir;
  FileSink sink{.dir = dir.path(), .combined_file = "tls.pem"};
  MESHID_ASSERT_OK(writeSink(sink, *svid(), bundle()));
  EXPECT_EQ(*readFile(dir / "tls.pem", 100), "KEY\nCHAIN\n");
  EXPECT_EQ(modeOf(dir / "tls.pem"), 0600u);
}

TEST(FileSink, UnwritableDirectoryIsAnError) {
  TempDir dir;
  std::ofstream(dir / "file") << "x";
  FileSink sink{.dir = dir / "file"};  // a file where the directory should be
  EXPECT_FALSE(writeSink(sink, *svid(), bundle()).ok());
}

TEST(RunCommand, ExitStatusTimeoutAndSuccess) {
  TempDir dir;
  MESHID_EXPECT_OK(runCommand("echo ran > " + (dir / "out").string(), 5s));
  EXPECT_EQ(*readFile(dir / "out", 100), "ran\n");
  auto failed = runCommand("exit 3", 5s);
  EXPECT_FALSE(failed.ok());
  MESHID_EXPECT_CONTAINS(meshid::testing::messageOf(failed), "status 3");
  auto start = std::chrono::steady_clock::now();
  auto slow = runCommand("sleep 10", 200ms);
  EXPECT_EQ(errorOf(slow).code, Code::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "a hung hook is killed";
}

TEST(SignalPidFile, SignalsThePidAndRefusesGarbage) {
  TempDir dir;
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  std::ofstream(dir / "pid") << child << "\n";
  MESHID_EXPECT_OK(signalPidFile(dir / "pid", SIGTERM));
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  for (const char* bad : {"", "abc", "1", "0", "-5", "12 34"}) {
    std::ofstream(dir / "bad", std::ios::trunc) << bad;
    EXPECT_FALSE(signalPidFile(dir / "bad", SIGHUP).ok()) << bad;
  }
  EXPECT_FALSE(signalPidFile(dir / "missing", SIGHUP).ok());
}

TEST(SignalPidFile, AStalePidFileNeverSignalsTheProcessThatReusedThePid) {
  TempDir dir;
  // The pid file was written an hour before the process holding that pid
  // (this test itself) started: the pid was reused.
  std::ofstream(dir / "stale.pid") << getpid() << "\n";
  std::filesystem::last_write_time(dir / "stale.pid",
                                   std::filesystem::file_time_type::clock::now() - 1h);
  auto r = signalPidFile(dir / "stale.pid", SIGHUP);
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(meshid::testing::messageOf(r), "stale");
  auto started = processStartTime(getpid());
  ASSERT_TRUE(started);
  EXPECT_LE(*started, std::chrono::system_clock::now());
  EXPECT_GT(*started, std::chrono::system_clock::now() - 24h);
  EXPECT_FALSE(processStartTime(-5));
}

TEST(FileSinks, WritesOnRotationAndRunsTheHookAsync) {
  TempDir dir;
  AgentConfig config(pki::TrustDomain::parse("td").value());
  Entry e{pki::SpiffeId::parse("spiffe://td/ns/a/sa/b").value(), {}, FileSink{}};
  e.file_sink->dir = dir / "sink";
  e.file_sink->reload_command = "echo hook >> " + (dir / "hook.log").string();
  config.entries.push_back(e);
  config.bundle_sinks.push_back({dir / "bundle/root.pem", ""});
  SecretCache cache;
  cache.setBundle(std::make_shared<Bundle>(bundle()));
  AgentMetrics metrics;
  {
    FileSinks sinks(config, cache, metrics);
    sinks.svidChanged(*svid());
    sinks.bundleChanged(bundle());
    for (int i = 0; i < 200; ++i) {
      auto log = readFile(dir / "hook.log", 1000);
      if (log.ok() && *log == "hook\nhook\n")
        break;
      usleep(10'000);
    }
  }
  EXPECT_EQ(*readFile(dir / "sink/key.pem", 100), "KEY\n");
  EXPECT_EQ(*readFile(dir / "bundle/root.pem", 100), "ROOT1\nROOT2\n");
  EXPECT_EQ(*readFile(dir / "hook.log", 100), "hook\nhook\n");
  auto text = metrics.serialize(std::chrono::system_clock::now());
  MESHID_EXPECT_CONTAINS(text, "meshid_agent_reload_hooks_total{result=\"ok\"} 2");
  MESHID_EXPECT_CONTAINS(text, "meshid_agent_file_sink_writes_total{result=\"ok\"} 3");
}

}  // namespace
}  // namespace meshid::agent
