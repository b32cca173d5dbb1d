#include "rpc/idle_reset_filter.h"

#include <algorithm>

namespace meshid::rpc {

namespace {
constexpr uint8_t kHeadersFrame = 0x1;
constexpr uint8_t kRstStreamFrame = 0x3;
constexpr uint32_t kRstStreamPayloadBytes = 4;
}  // namespace

bool IdleResetFilter::feed(const uint8_t* data, size_t len, const Sink& sink) {
  const uint8_t* end = data + len;
  if (preface_left_ > 0) {
    size_t n = std::min(preface_left_, len);
    preface_left_ -= n;
    if (!sink(data, n))
      return false;
    data += n;
  }
  while (data < end) {
    if (payload_left_ > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(payload_left_, end - data));
      if (!dropping_ && !sink(data, n))
        return false;
      payload_left_ -= n;
      data += n;
      continue;
    }
    // A frame header, perhaps split over reads: held back until whole, since
    // whether it passes depends on all of it.
    size_t n = std::min(kFrameHeaderBytes - header_have_, static_cast<size_t>(end - data));
    std::copy_n(data, n, header_.begin() + static_cast<std::ptrdiff_t>(header_have_));
    header_have_ += n;
    data += n;
    if (header_have_ == kFrameHeaderBytes && !onHeader(sink))
      return false;
  }
  return true;
}

bool IdleResetFilter::onHeader(const Sink& sink) {
  header_have_ = 0;
  uint32_t length = (uint32_t{header_[0]} << 16) | (uint32_t{header_[1]} << 8) | header_[2];
  uint8_t type = header_[3];
  uint32_t stream = ((uint32_t{header_[5]} & 0x7f) << 24) | (uint32_t{header_[6]} << 16) |
                    (uint32_t{header_[7]} << 8) | header_[8];
  payload_left_ = length;
  if (type == kHeadersFrame && stream % 2 == 1)
    highest_opened_ = std::max(highest_opened_, stream);
  dropping_ = type == kRstStreamFrame && length == kRstStreamPayloadBytes && stream % 2 == 1 &&
              stream > highest_opened_;
  if (dropping_) {
    ++dropped_;
    return true;
  }
  return sink(header_.data(), header_.size());
}

}  // namespace meshid::rpc
