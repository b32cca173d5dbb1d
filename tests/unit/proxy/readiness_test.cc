// Socket readiness on real sockets (TCP over loopback): what epoll's edges
// say is remembered until a read or write proves otherwise, the peer's FIN
// is never lost behind a short read, and waits end on fail() or shutdown.
#include "proxy/readiness.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace meshid::proxy {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

// A connected loopback pair: `ours` is watched, `peer` plays the other end.
struct Pair {
  explicit Pair(asio::io_context& io) : ours(io), peer(io) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    acceptor.accept(ours);
    ours.non_blocking(true);
  }
  tcp::socket ours;
  tcp::socket peer;
};

class ReadinessTest : public ::testing::Test {
 protected:
  ReadinessTest() : loop_(std::make_unique<ReadinessLoop>(io_)), pair_(io_) {
    EXPECT_TRUE(loop_->ok());
    EXPECT_TRUE(ready_.watch(*loop_, pair_.ours.native_handle()));
  }
  // Runs the worker until `done` or 2 s have passed.
  void runUntil(const std::optional<asio::error_code>& done) {
    auto until = std::chrono::steady_clock::now() + 2s;
    while (!done && std::chrono::steady_clock::now() < until)
      loop_->runFor(10ms);
  }
  // Reads what is there now, as the pipe does; marks the socket drained on a short read.
  std::string readNow() {
    char buf[256];
    asio::error_code ec;
    size_t n = pair_.ours.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || n < sizeof buf)
      ready_.readDrained();
    return ec ? std::string(ec == asio::error::eof ? "<eof>" : "<again>") : std::string(buf, n);
  }
  void peerSends(const std::string& s) { asio::write(pair_.peer, asio::buffer(s)); }
  // Runs the worker for a while, so edges are harvested.
  void runBriefly() { loop_->runFor(50ms); }
  void expectAWaitOnADrainedSocketToEndOnlyWhenDataArrives() {
    EXPECT_EQ(readNow(), "<again>");  // nothing yet
    EXPECT_FALSE(ready_.readReady());
    std::optional<asio::error_code> done;
    ready_.waitRead([&](asio::error_code ec) { done = ec; });
    runBriefly();
    EXPECT_FALSE(done) << "woke with no data";

    peerSends("hello");
    runUntil(done);
    ASSERT_TRUE(done);
    EXPECT_FALSE(*done);
    EXPECT_EQ(readNow(), "hello");
  }
  // Waits for reading and reports how the wait ended (nothing: not in 2 s).
  std::optional<asio::error_code> waitReadOutcome() {
    std::optional<asio::error_code> done;
    ready_.waitRead([&](asio::error_code ec) { done = ec; });
    runUntil(done);
    return done;
  }

  asio::io_context io_;
  std::unique_ptr<ReadinessLoop> loop_;
  Pair pair_;
  Readiness ready_;  // after the pair: leaves the set before the fd closes
};

TEST_F(ReadinessTest, AWaitOnADrainedSocketEndsWhenDataArrives) {
  expectAWaitOnADrainedSocketToEndOnlyWhenDataArrives();
}

TEST_F(ReadinessTest, DataThatCameBeforeTheWaitEndsItAtOnce) {
  EXPECT_EQ(readNow(), "<again>");
  peerSends("early");
  runBriefly();  // the edge is harvested while nobody waits
  EXPECT_TRUE(ready_.readReady());
  auto done = waitReadOutcome();
  ASSERT_TRUE(done);
  EXPECT_EQ(readNow(), "early");
}

// nginx's pending_eof: the last bytes and the FIN come on one edge; the short
// read takes the bytes and must not make the next wait sleep past the FIN.
TEST_F(ReadinessTest, APeerFinThatCameWithTheLastBytesIsNotLost) {
  peerSends("last");
  pair_.peer.shutdown(tcp::socket::shutdown_send);
  runBriefly();
  EXPECT_EQ(readNow(), "last");  // short: marked drained
  EXPECT_TRUE(ready_.readReady()) << "the FIN was seen: reads must go on";
  auto done = waitReadOutcome();
  ASSERT_TRUE(done);
  EXPECT_EQ(readNow(), "<eof>");
}

// The pipe's shape: the handler an edge ends starts the next wait on the
// same side (its own waiter is freed by then), and it runs where asio
// recycles memory, so neither its waiter nor its coroutine frames are
// malloc'd. Outside the loop the thread is asio's no more.
TEST_F(ReadinessTest, AHandlerAnEdgeEndsWaitsAgainOnAThreadAsioRecyclesMemoryOn) {
  EXPECT_EQ(readNow(), "<again>");
  int ended = 0;
  std::vector<bool> on_asio_thread;
  std::string got;
  std::function<void(asio::error_code)> next = [&](asio::error_code ec) {
    ASSERT_FALSE(ec);
    ++ended;
    on_asio_thread.push_back(asio::detail::thread_context::top_of_thread_call_stack() != nullptr);
    got += readNow();
    if (ended < 3)
      ready_.waitRead(next);
  };
  ready_.waitRead(next);
  for (const char* part : {"a", "b", "c"}) {
    runBriefly();
    peerSends(part);
    auto until = std::chrono::steady_clock::now() + 2s;
    const int before = ended;
    while (ended == before && std::chrono::steady_clock::now() < until)
      loop_->runFor(10ms);
  }
  EXPECT_EQ(ended, 3);
  EXPECT_EQ(got, "abc");
  EXPECT_EQ(on_asio_thread, std::vector<bool>({true, true, true}));
  EXPECT_EQ(asio::detail::thread_context::top_of_thread_call_stack(), nullptr);
}

// Busy polling changes how the loop waits for an edge, not what it does
// with one.
TEST_F(ReadinessTest, WithBusyPollAWaitStillEndsOnlyWhenDataArrives) {
  loop_->setBusyPoll(200us, false);
  expectAWaitOnADrainedSocketToEndOnlyWhenDataArrives();
}

std::chrono::nanoseconds threadCpu() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}

// The poll is bounded: a loop with nothing to do polls for its budget and
// then sleeps, so an idle proxy costs no CPU.
TEST_F(ReadinessTest, AnIdleLoopWithBusyPollSleepsAfterItsBudget) {
  loop_->setBusyPoll(1000us, false);
  const auto before = threadCpu();
  loop_->runFor(300ms);
  const auto used = threadCpu() - before;
  EXPECT_LT(used, 100ms) << "the loop kept polling for "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(used).count()
                         << " ms of 300";
}

// A timer every 2 ms wakes the loop, and nothing else comes: every poll
// after a wake-up runs to its budget for nothing. A fixed budget keeps
// polling each time; an adaptive one soon polls only now and then.
class BusyPollBudgetTest : public ReadinessTest {
 protected:
  struct Outcome {
    ReadinessLoop::PollStats stats;
    std::chrono::nanoseconds cpu;
    int ticks = 0;
  };
  Outcome tickFor(std::chrono::microseconds budget, bool adaptive, std::chrono::milliseconds d) {
    loop_->runFor(5ms);  // takes the socket's first edge (writable), without polling
    loop_->setBusyPoll(budget, adaptive);
    Outcome out;
    LoopTimer timer;
    std::function<void()> tick = [&] {
      ++out.ticks;
      timer.set(*loop_, LoopTimer::Clock::now() + 2ms, tick);
    };
    timer.set(*loop_, LoopTimer::Clock::now() + 2ms, tick);
    const auto before = threadCpu();
    loop_->runFor(d);
    out.cpu = threadCpu() - before;
    out.stats = loop_->pollStats();
    timer.cancel();
    return out;
  }
};

TEST_F(BusyPollBudgetTest, AFixedBudgetPollsAfterEveryWakeUp) {
  auto o = tickFor(1000us, false, 300ms);
  ASSERT_GT(o.ticks, 20);
  EXPECT_EQ(o.stats.caught, 0u);
  EXPECT_GE(o.stats.missed, static_cast<uint64_t>(o.ticks) - 1);
}

TEST_F(BusyPollBudgetTest, AnAdaptiveBudgetStopsPollingWhenPollsCatchNothing) {
  auto o = tickFor(1000us, true, 300ms);
  ASSERT_GT(o.ticks, 20);
  EXPECT_EQ(o.stats.caught, 0u);
  // Misses in a row skip 1, 3, 7, 15 ... sleeps: 6 polls in the first 63
  // wake-ups (whether the run ends on one or two wake-ups per tick).
  EXPECT_LE(o.stats.missed, 8u) << o.ticks << " ticks";
  EXPECT_GE(o.stats.missed, 3u);
  EXPECT_LT(o.cpu, 50ms) << "with a fixed budget each tick would poll for up to 1 ms";
}

// When events keep coming within the budget, the adaptive loop keeps polling.
TEST_F(ReadinessTest, AnAdaptiveBudgetKeepsPollingWhilePollsCatchEvents) {
  // A budget far above the writer's pace: a poll misses only when this
  // machine keeps the writer off its core for 20 ms.
  loop_->setBusyPoll(20ms, true);
  std::atomic<bool> stop{false};
  std::thread writer([&] {  // a byte every 100 us
    while (!stop.load()) {
      asio::error_code ec;
      asio::write(pair_.peer, asio::buffer("x", 1), ec);
      std::this_thread::sleep_for(100us);
    }
  });
  int reads = 0;
  std::function<void(asio::error_code)> onReadable = [&](asio::error_code ec) {
    if (ec)
      return;
    while (readNow() != "<again>") {
    }
    ++reads;
    ready_.waitRead(onReadable);
  };
  ready_.waitRead(onReadable);
  loop_->runFor(300ms);
  stop = true;
  writer.join();
  const auto s = loop_->pollStats();
  ASSERT_GT(reads, 20);
  // Without the reset after each catch, a few misses would make polls rare.
  EXPECT_GT(s.caught, 10u);
  EXPECT_GT(s.caught, s.missed) << "caught " << s.caught << ", missed " << s.missed;
}

TEST_F(ReadinessTest, AWriteWaitEndsWhenThePeerMakesRoom) {
  // Fill the send buffer and the peer's receive buffer.
  std::string chunk(64 * 1024, 'x');
  size_t sent = 0;
  for (;;) {
    asio::error_code ec;
    size_t n = pair_.ours.write_some(asio::buffer(chunk), ec);
    if (ec == asio::error::would_block) {
      ready_.writeBlocked();
      break;
    }
    ASSERT_FALSE(ec) << ec.message();
    sent += n;
  }
  ASSERT_GT(sent, 0u);
  std::optional<asio::error_code> done;
  ready_.waitWrite([&](asio::error_code ec) { done = ec; });
  runBriefly();
  EXPECT_FALSE(done) << "woke while the socket was still full";

  std::string sink(1 << 20, '\0');
  size_t drained = 0;
  while (drained < sent) {  // the peer reads everything: room again
    drained += pair_.peer.read_some(asio::buffer(sink));
  }
  runUntil(done);
  ASSERT_TRUE(done);
  EXPECT_FALSE(*done);
  EXPECT_TRUE(ready_.writeReady());
}

TEST_F(ReadinessTest, FailEndsWaitsAndEveryLaterWait) {
  EXPECT_EQ(readNow(), "<again>");
  std::optional<asio::error_code> first, later;
  ready_.waitRead([&](asio::error_code ec) { first = ec; });
  ready_.fail();
  ready_.waitWrite([&](asio::error_code ec) { later = ec; });
  runUntil(later);
  ASSERT_TRUE(first);
  ASSERT_TRUE(later);
  EXPECT_EQ(*first, asio::error::operation_aborted);
  EXPECT_EQ(*later, asio::error::operation_aborted);
}

TEST_F(ReadinessTest, TwoSocketsInOneLoopWakeOnlyTheirOwnWaits) {
  Pair other(io_);
  Readiness other_ready;
  ASSERT_TRUE(other_ready.watch(*loop_, other.ours.native_handle()));
  EXPECT_EQ(readNow(), "<again>");
  char buf[16];
  asio::error_code ec;
  other.ours.read_some(asio::buffer(buf), ec);
  other_ready.readDrained();

  std::optional<asio::error_code> mine, theirs;
  ready_.waitRead([&](asio::error_code e) { mine = e; });
  other_ready.waitRead([&](asio::error_code e) { theirs = e; });
  asio::write(other.peer, asio::buffer(std::string("to the other")));
  runUntil(theirs);
  ASSERT_TRUE(theirs);
  EXPECT_FALSE(mine) << "a wait woke for another socket's data";
  ready_.fail();  // let go of the pending wait before the test ends
  runUntil(mine);
}

// At shutdown the worker has stopped with waits pending. detach() hands their
// handlers to the stopped io_context, whose destruction frees them: nothing
// leaks (LeakSanitizer in the sanitizer build) and nothing runs.
TEST(ReadinessShutdown, PendingWaitsAreFreedWithTheStoppedWorker) {
  auto owned = std::make_shared<int>(7);
  std::weak_ptr<int> watch = owned;
  bool ran = false;
  {
    auto io = std::make_unique<asio::io_context>();
    auto loop = std::make_unique<ReadinessLoop>(*io);
    {
      auto pair = std::make_unique<Pair>(*io);
      auto ready = std::make_unique<Readiness>();
      ASSERT_TRUE(ready->watch(*loop, pair->ours.native_handle()));
      char buf[8];
      asio::error_code ec;
      pair->ours.read_some(asio::buffer(buf), ec);
      ready->readDrained();
      ready->waitRead([keep = std::move(owned), &ran](asio::error_code) { ran = true; });
      loop->runFor(20ms);
      loop->detach();
      EXPECT_FALSE(watch.expired()) << "the handler is queued, not yet freed";
      ready.reset();  // the session goes first, as its frames are freed
      pair.reset();
    }
    io.reset();  // frees the queued handler without running it
    EXPECT_TRUE(watch.expired());
    loop.reset();
  }
  EXPECT_FALSE(ran);
}

// The loop's own timers: a due timer runs once, on the worker; a cancelled,
// re-set or destroyed one does not run for its old time.
TEST(LoopTimerTest, RunsWhenDueAndNotBefore) {
  asio::io_context io;
  ReadinessLoop loop(io);
  ASSERT_TRUE(loop.ok());
  LoopTimer timer;
  int ran = 0;
  const auto set_at = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point ran_at;
  timer.set(loop, set_at + 60ms, [&] {
    ++ran;
    ran_at = std::chrono::steady_clock::now();
  });
  EXPECT_TRUE(timer.pending());
  loop.runFor(20ms);
  EXPECT_EQ(ran, 0) << "ran before its time";
  loop.runFor(300ms);
  EXPECT_EQ(ran, 1);
  EXPECT_GE(ran_at - set_at, 60ms);
  EXPECT_LT(ran_at - set_at, 200ms) << "the loop slept past the deadline";
  EXPECT_FALSE(timer.pending());
}

TEST(LoopTimerTest, CancelledResetAndDestroyedTimersDoNotRunForTheirOldTime) {
  asio::io_context io;
  ReadinessLoop loop(io);
  int cancelled = 0, reset_old = 0, reset_new = 0, destroyed = 0;
  LoopTimer a, b;
  a.set(loop, std::chrono::steady_clock::now() + 10ms, [&] { ++cancelled; });
  a.cancel();
  b.set(loop, std::chrono::steady_clock::now() + 10ms, [&] { ++reset_old; });
  b.set(loop, std::chrono::steady_clock::now() + 40ms, [&] { ++reset_new; });
  {
    LoopTimer c;
    c.set(loop, std::chrono::steady_clock::now() + 10ms, [&] { ++destroyed; });
  }
  loop.runFor(25ms);
  EXPECT_EQ(reset_new, 0);
  loop.runFor(100ms);
  EXPECT_EQ(cancelled, 0);
  EXPECT_EQ(reset_old, 0);
  EXPECT_EQ(destroyed, 0);
  EXPECT_EQ(reset_new, 1);
}

// The proxy's idle watch sets its timer again from its own callback.
TEST(LoopTimerTest, ATimerMaySetItselfAgainFromItsCallback) {
  asio::io_context io;
  ReadinessLoop loop(io);
  LoopTimer timer;
  int ticks = 0;
  std::function<void()> tick = [&] {
    if (++ticks < 3)
      timer.set(loop, std::chrono::steady_clock::now() + 5ms, tick);
  };
  timer.set(loop, std::chrono::steady_clock::now() + 5ms, tick);
  loop.runFor(200ms);
  EXPECT_EQ(ticks, 3);
  EXPECT_FALSE(timer.pending());
}

TEST(LoopEventTest, FireEndsAWaitOrTheNextOne) {
  asio::io_context io;
  ReadinessLoop loop(io);
  std::optional<asio::error_code> before, after;
  LoopEvent first(loop);
  first.wait([&](asio::error_code ec) { before = ec; });
  loop.runFor(10ms);
  EXPECT_FALSE(before) << "ended before it was fired";
  first.fire();
  loop.runFor(10ms);
  ASSERT_TRUE(before);
  EXPECT_FALSE(*before);

  LoopEvent second(loop);
  second.fire();
  second.wait([&](asio::error_code ec) { after = ec; });
  loop.runFor(10ms);
  ASSERT_TRUE(after);
  EXPECT_FALSE(*after);
}

// At shutdown an event nobody will fire must not keep its waiter (and the
// frame that owns the event) alive: detach() hands it to the idle
// io_context, whose destruction frees it without running it.
TEST(LoopEventTest, DetachFreesAPendingWaitWithoutRunningIt) {
  auto owned = std::make_shared<int>(1);
  std::weak_ptr<int> watch = owned;
  bool ran = false;
  auto io = std::make_unique<asio::io_context>();
  auto loop = std::make_unique<ReadinessLoop>(*io);
  auto event = std::make_unique<LoopEvent>(*loop);
  event->wait([keep = std::move(owned), &ran](asio::error_code) { ran = true; });
  loop->detach();
  event.reset();
  EXPECT_FALSE(watch.expired()) << "the handler is queued, not yet freed";
  io.reset();
  EXPECT_TRUE(watch.expired());
  EXPECT_FALSE(ran);
}

// The worker blocks in epoll_wait; stop() from another thread wakes it, and
// a handler posted before it runs first.
TEST(ReadinessLoopTest, StopFromAnotherThreadEndsRun) {
  asio::io_context io;
  ReadinessLoop loop(io);
  bool posted_ran = false;
  asio::post(io, [&] { posted_ran = true; });
  std::thread worker([&] { loop.run(); });
  std::this_thread::sleep_for(50ms);
  const auto asked = std::chrono::steady_clock::now();
  loop.stop();
  worker.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  EXPECT_TRUE(posted_ran);
}

}  // namespace
}  // namespace meshid::proxy
