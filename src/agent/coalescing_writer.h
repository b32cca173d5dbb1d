// One write in flight per gRPC stream, and a newer message replaces an unsent
// older one: each message the agent streams (an SDS response, a Workload API
// message) carries the full state, so only the latest matters. Not
// thread-safe: the stream's own mutex guards it.
#pragma once

#include <optional>
#include <utility>

namespace meshid::agent {

template <class Message>
class CoalescingWriter {
 public:
  // The message to start writing now, or nullptr when a write is in flight
  // (the message waits, replacing any other waiting one).
  const Message* push(Message message) {
    if (writing_) {
      queued_ = std::move(message);
      return nullptr;
    }
    writing_ = true;
    in_flight_ = std::move(message);
    return &in_flight_;
  }

  // The write in flight completed: the waiting message to write next, if any.
  const Message* done() {
    writing_ = false;
    if (!queued_)
      return nullptr;
    writing_ = true;
    in_flight_ = std::move(*queued_);
    queued_.reset();
    return &in_flight_;
  }

  bool writing() const { return writing_; }

 private:
  bool writing_ = false;
  Message in_flight_{};
  std::optional<Message> queued_;
};

}  // namespace meshid::agent
