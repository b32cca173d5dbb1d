#include "agent/attestation.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit/common/test_util.h"

namespace meshid::agent {
namespace {

Entry entry(const char* id, Selectors s) {
  return Entry{pki::SpiffeId::parse(id).value(), std::move(s), std::nullopt};
}

TEST(Attestation, PeerOfASocketPairIsThisProcess) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  auto peer = peerOf(fds[0]);
  close(fds[0]);
  close(fds[1]);
  MESHID_ASSERT_OK(peer);
  EXPECT_EQ(peer->pid, getpid());
  EXPECT_EQ(peer->uid, getuid());
  EXPECT_EQ(peer->gid, getgid());
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe);
  ASSERT_GT(n, 0);
  EXPECT_EQ(peer->exe, std::string(exe, static_cast<size_t>(n)));
}

TEST(Attestation, PeerOfANonSocketIsAnError) {
  EXPECT_FALSE(peerOf(-1).ok());
}

TEST(Attestation, EverySelectorGivenMustMatch) {
  PeerInfo p{.pid = 10, .uid = 1000, .gid = 100, .exe = "/usr/bin/envoy"};
  EXPECT_TRUE(selectorsMatch({.uid = 1000}, p));
  EXPECT_TRUE(selectorsMatch({.uid = 1000, .gid = 100, .path = "/usr/bin/envoy"}, p));
  EXPECT_FALSE(selectorsMatch({.uid = 1001}, p));
  EXPECT_FALSE(selectorsMatch({.uid = 1000, .gid = 101}, p));
  EXPECT_FALSE(selectorsMatch({.uid = 1000, .path = "/usr/bin/nginx"}, p));
  EXPECT_FALSE(selectorsMatch({}, p)) << "no selectors matches nobody (deny by default)";
  PeerInfo unknown_exe{.uid = 1000};
  EXPECT_FALSE(selectorsMatch({.path = "/usr/bin/envoy"}, unknown_exe));
}

TEST(Attestation, EntriesInConfigOrderFirstIsDefault) {
  std::vector<Entry> entries{entry("spiffe://td/a", {.uid = 1}),
                             entry("spiffe://td/files", {}),  // file sink only: never served
                             entry("spiffe://td/b", {.gid = 7}),
                             entry("spiffe://td/c", {.uid = 2})};
  auto got = entriesFor(entries, PeerInfo{.uid = 1, .gid = 7});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->spiffe_id.str(), "spiffe://td/a");
  EXPECT_EQ(got[1]->spiffe_id.str(), "spiffe://td/b");
  EXPECT_TRUE(entriesFor(entries, PeerInfo{.uid = 65534, .gid = 65534}).empty());
}

TEST(PeerRegistry, MapsGrpcFdPeersAndRefusesEverythingElse) {
  PeerRegistry r;
  r.remember(7, PeerInfo{.pid = 1, .uid = 2});
  ASSERT_TRUE(r.lookup("fd:7"));
  EXPECT_EQ(r.lookup("fd:7")->uid, 2u);
  r.remember(7, PeerInfo{.pid = 3, .uid = 4});  // the fd number was reused
  EXPECT_EQ(r.lookup("fd:7")->uid, 4u);
  for (const char* bad :
       {"fd:8", "unix:", "ipv4:127.0.0.1:1", "fd:", "fd:7x", "fd:-1", "fd:99999999999"})
    EXPECT_FALSE(r.lookup(bad)) << bad;
}

}  // namespace
}  // namespace meshid::agent
