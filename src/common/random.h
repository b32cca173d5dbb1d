// The one source of randomness for decisions (jitter), injected like Clock so
// tests can fix it. Key material and serials use OpenSSL's CSPRNG directly.
#pragma once

#include <mutex>
#include <random>
#include <vector>

namespace meshid {

class Random {
 public:
  virtual ~Random() = default;
  // Uniform in [0, 1). Thread-safe.
  virtual double uniform() = 0;
};

class SystemRandom final : public Random {
 public:
  SystemRandom() : engine_(std::random_device{}()) {}
  double uniform() override {
    std::lock_guard lock(mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(engine_);
  }

 private:
  std::mutex mu_;
  std::mt19937_64 engine_;  // guarded by mu_
};

// Returns the given values in turn (then the last one again), for tests.
class FakeRandom final : public Random {
 public:
  explicit FakeRandom(std::vector<double> values) : values_(std::move(values)) {}
  double uniform() override {
    std::lock_guard lock(mu_);
    double v = values_.empty() ? 0.0 : values_[std::min(next_, values_.size() - 1)];
    ++next_;
    return v;
  }

 private:
  std::mutex mu_;
  std::vector<double> values_;  // guarded by mu_
  size_t next_ = 0;             // guarded by mu_
};

}  // namespace meshid
