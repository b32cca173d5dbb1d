// One worker's data buffers: the pipe's, and the TLS 1.3 record layer's
// input and output (tls13_stream.h). A user takes one when data arrives and
// gives it back before it waits again, so an idle connection holds none and
// a busy one does not malloc and free 64 KiB for every arrival. Touched only
// on its worker's thread: no lock.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace meshid::proxy {

class BufferPool {
 public:
  // What the pipe reads at once: up to four full TLS records, so what
  // arrived together leaves in one write.
  static constexpr size_t kUsableBytes = 64 * 1024;
  // Each buffer has room beyond that for the records' headers and tags
  // (22 bytes each) when the record layer seals kUsableBytes of data.
  static constexpr size_t kBufferBytes = kUsableBytes + 1024;

  explicit BufferPool(size_t spare = 8) : spare_limit_(spare) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  std::unique_ptr<char[]> takeRaw() {
    if (spare_.empty())
      return std::unique_ptr<char[]>(new char[kBufferBytes]);
    auto buf = std::move(spare_.back());
    spare_.pop_back();
    return buf;
  }
  void giveBack(std::unique_ptr<char[]> buf) {
    if (buf && spare_.size() < spare_limit_)
      spare_.push_back(std::move(buf));
  }

  // A buffer that goes back to the pool when the lease ends.
  class Lease {
   public:
    explicit Lease(BufferPool& pool) : pool_(pool), buf_(pool.takeRaw()) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.giveBack(std::move(buf_)); }
    char* data() const { return buf_.get(); }

   private:
    BufferPool& pool_;
    std::unique_ptr<char[]> buf_;
  };
  Lease take() { return Lease(*this); }

 private:
  const size_t spare_limit_;
  std::vector<std::unique_ptr<char[]>> spare_;
};

}  // namespace meshid::proxy
