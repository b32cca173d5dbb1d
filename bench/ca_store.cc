// What the serial's layout costs the CA's SQLite store: one batch of 9
// issuance rows (the average batch at c=64) per iteration, on top of a table
// that already holds 200k rows, with random serials (the old layout) against
// serials that start with the issue time (pki/issuance.cc). Per-row time is
// reported as items/s.
#include <benchmark/benchmark.h>
#include <openssl/rand.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "pki/issuance.h"
#include "store/sqlite_store.h"

namespace {

using meshid::store::IssuanceRecord;

constexpr int kPrefill = 200'000;
constexpr int kBatch = 9;

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

// The serial as the CA makes it now (pki::leafSerial), or as it made it
// before: 16 random bytes, positive.
std::string serial(bool time_ordered, int64_t millis) {
  std::array<unsigned char, 16> b{};
  if (time_ordered) {
    b = *meshid::pki::leafSerial(meshid::SystemTime(std::chrono::milliseconds(millis)));
  } else {
    RAND_bytes(b.data(), 16);
    b[0] = static_cast<unsigned char>((b[0] & 0x7f) | 0x01);
  }
  return hex(b.data(), b.size());
}

IssuanceRecord record(std::string s) {
  auto now = std::chrono::system_clock::now();
  return {.serial = std::move(s),
          .spiffe_id = "spiffe://example.org/ns/bench/sa/load",
          .not_before = now,
          .not_after = now + std::chrono::hours(1),
          .signer = "selfsigned",
          .caller = "spiffe://example.org/ns/bench/sa/load",
          .method = "mtls",
          .api = "istio",
          .issued_at = now};
}

// Rows and the pointers recordIssuances takes; moving keeps the pointers valid
// (a vector's move keeps its buffer).
struct Batch {
  std::vector<IssuanceRecord> rows;
  std::vector<const IssuanceRecord*> ptrs;
};

void BM_RecordIssuances(benchmark::State& state) {
  const bool time_ordered = state.range(0) == 1;
  static std::atomic<int> run{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("meshid-bench-store-" + std::to_string(::getpid()) + "-" + std::to_string(run++));
  std::filesystem::create_directories(dir);
  auto store = meshid::store::SqliteStore::open(dir / "ca.db");
  if (!store.ok()) {
    state.SkipWithError(store.error().message.c_str());
    return;
  }
  int64_t millis = 1'790'000'000'000;  // about 4 rows per millisecond, as at 4,000/s
  auto batch = [&](int n) {
    Batch b;
    for (int i = 0; i < n; ++i)
      b.rows.push_back(record(serial(time_ordered, millis++ / 4)));
    for (const auto& r : b.rows)
      b.ptrs.push_back(&r);
    return b;
  };
  for (int i = 0; i < kPrefill; i += 1000)
    (void)(*store)->recordIssuances(batch(1000).ptrs);
  for (auto _ : state) {
    state.PauseTiming();
    Batch b = batch(kBatch);
    state.ResumeTiming();
    if (auto r = (*store)->recordIssuances(b.ptrs); !r.ok())
      state.SkipWithError(r.error().message.c_str());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  store->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RecordIssuances)
    ->ArgName("time_ordered")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
