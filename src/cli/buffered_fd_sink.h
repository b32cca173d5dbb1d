// A log sink that writes to a file descriptor only when flushed (or when its
// buffer fills). `ca serve` logs through it so that a batch of issuances'
// "CSR signed" lines leaves in one write(2) instead of one each; loggers that
// flush on every line still do.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>

namespace meshid::cli {

class BufferedFdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit BufferedFdSink(int fd) : fd_(fd) {}
  ~BufferedFdSink() override {
    std::lock_guard lock(mutex_);
    flush_();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    buf_.append(formatted.data(), formatted.size());
    if (buf_.size() >= kFlushAt)
      flush_();
  }

  void flush_() override {
    size_t off = 0;
    while (off < buf_.size()) {
      ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;  // a log that cannot be written is dropped, never a reason to stop signing
      off += static_cast<size_t>(n);
    }
    buf_.clear();
  }

 private:
  static constexpr size_t kFlushAt = 64 * 1024;
  int fd_;
  std::string buf_;
};

}  // namespace meshid::cli
