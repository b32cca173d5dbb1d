// Which TLS connections keep OpenSSL's record buffers between records.
//
// Why: the contexts set SSL_MODE_RELEASE_BUFFERS, so OpenSSL frees a
// connection's read buffer (room for four records) whenever it is empty and
// its write buffer after each write, and allocates them again for the next
// record. An idle connection then holds neither (the idle-RSS row of
// bench/proxy_compare.sh), but a busy one pays an allocation and a free per
// record and direction: at 32 keep-alive connections, keeping them was 1.4 %
// more requests per CPU-second (docs/PERFORMANCE.md).
//
// So a connection keeps its buffers once it is busy (kBusyStreak transfers in
// a row, each within kBusyGap of the one before; a transfer is what the pipe
// reads at once and passes on, one way), up to a limit per worker, and
// gives them back when it has been quiet for `rest` (the worker's sweep). A
// connection that only handshakes and exchanges a few records never keeps
// them.
//
// One per worker, touched only on its thread; kept() may be read by scrapes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/readiness.h"

typedef struct ssl_st SSL;

namespace meshid::proxy {

class TlsBufferKeeper;

// One TLS connection's part. Declared after its SSL, so it leaves the
// keeper's list before the SSL is freed.
class TlsBufferUse {
 public:
  using Clock = std::chrono::steady_clock;
  // Transfers this close together count as busy...
  static constexpr Clock::duration kBusyGap = std::chrono::milliseconds(10);
  // ...once this many came in a row (a request and its answer are two).
  static constexpr int kBusyStreak = 8;

  TlsBufferUse(TlsBufferKeeper& keeper, SSL* ssl) : keeper_(keeper), ssl_(ssl) {}
  ~TlsBufferUse();
  TlsBufferUse(const TlsBufferUse&) = delete;
  TlsBufferUse& operator=(const TlsBufferUse&) = delete;

  // Data went through this connection at `now` (the worker's loop time).
  void noteTraffic(Clock::time_point now) {
    if (stopped_)
      return;
    const bool close = now - last_ < kBusyGap;
    last_ = now;
    if (kept_)
      return;
    if (!close)
      streak_ = 0;
    else if (++streak_ >= kBusyStreak)
      startKeeping();
  }
  bool kept() const { return kept_; }
  // The SSL no longer carries records (they moved to the proxy's record
  // layer): its buffers go now and it leaves the keeper for good.
  void stop();

 private:
  friend class TlsBufferKeeper;
  void startKeeping();

  TlsBufferKeeper& keeper_;
  SSL* ssl_;
  Clock::time_point last_{};
  int streak_ = 0;
  bool kept_ = false;
  bool stopped_ = false;
  size_t slot_ = 0;  // its place in the keeper's list while kept
};

class TlsBufferKeeper {
 public:
  using Clock = TlsBufferUse::Clock;
  // `loop`: where the sweep runs; null, and sweep() is only called by hand
  // (tests). `limit`: connections that may keep buffers at once; 0: none.
  TlsBufferKeeper(ReadinessLoop* loop, size_t limit, Clock::duration rest = std::chrono::seconds(1))
      : loop_(loop), limit_(limit), rest_(rest) {}
  ~TlsBufferKeeper();
  TlsBufferKeeper(const TlsBufferKeeper&) = delete;
  TlsBufferKeeper& operator=(const TlsBufferKeeper&) = delete;

  // Gives back the buffers of the connections quiet since `now - rest`
  // (those with a record in OpenSSL's hands keep theirs until the next sweep).
  void sweep(Clock::time_point now);
  size_t kept() const { return kept_.load(std::memory_order_relaxed); }
  uint64_t released() const { return released_.load(std::memory_order_relaxed); }

 private:
  friend class TlsBufferUse;
  bool admit(TlsBufferUse& use);   // false at the limit
  void forget(TlsBufferUse& use);  // off the list; the SSL is left as it is
  void release(TlsBufferUse& use);
  void armSweep(Clock::time_point now);

  ReadinessLoop* loop_;
  const size_t limit_;
  const Clock::duration rest_;
  std::vector<TlsBufferUse*> list_;  // the kept ones, in no order
  LoopTimer sweep_timer_;
  std::atomic<size_t> kept_{0};
  std::atomic<uint64_t> released_{0};
};

}  // namespace meshid::proxy
