#include "proxy/tls_buffers.h"

#include <openssl/ssl.h>

namespace meshid::proxy {

TlsBufferUse::~TlsBufferUse() {
  if (kept_)
    keeper_.forget(*this);
}

void TlsBufferUse::stop() {
  stopped_ = true;
  if (kept_)
    keeper_.forget(*this);
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  SSL_free_buffers(ssl_);
}

void TlsBufferUse::startKeeping() {
  streak_ = 0;
  if (!keeper_.admit(*this))
    return;  // at the limit: busy again later, asked again then
  SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  kept_ = true;
}

TlsBufferKeeper::~TlsBufferKeeper() {
  while (!list_.empty())
    forget(*list_.back());
}

bool TlsBufferKeeper::admit(TlsBufferUse& use) {
  if (list_.size() >= limit_)
    return false;
  const bool was_empty = list_.empty();
  use.slot_ = list_.size();
  list_.push_back(&use);
  kept_.fetch_add(1, std::memory_order_relaxed);
  if (was_empty)
    armSweep(use.last_);
  return true;
}

void TlsBufferKeeper::forget(TlsBufferUse& use) {
  TlsBufferUse* last = list_.back();  // takes its place
  list_[use.slot_] = last;
  last->slot_ = use.slot_;
  list_.pop_back();
  use.kept_ = false;
  kept_.fetch_sub(1, std::memory_order_relaxed);
}

// With the mode set again OpenSSL releases what SSL_free_buffers could not
// (a write still going out) once it is done with it.
void TlsBufferKeeper::release(TlsBufferUse& use) {
  SSL_set_mode(use.ssl_, SSL_MODE_RELEASE_BUFFERS);
  SSL_free_buffers(use.ssl_);
  forget(use);
  released_.fetch_add(1, std::memory_order_relaxed);
}

void TlsBufferKeeper::sweep(Clock::time_point now) {
  // From the end: a release moves the last one into its place, already seen.
  for (size_t i = list_.size(); i-- > 0;) {
    TlsBufferUse* u = list_[i];
    // A record OpenSSL holds but the pipe has not read yet stays with its
    // buffer: freeing it would lose it.
    if (now - u->last_ >= rest_ && SSL_has_pending(u->ssl_) == 0)
      release(*u);
  }
}

void TlsBufferKeeper::armSweep(Clock::time_point now) {
  if (!loop_)
    return;
  sweep_timer_.set(*loop_, now + rest_, [this] {
    sweep(loop_->now());
    if (!list_.empty())
      armSweep(loop_->now());
  });
}

}  // namespace meshid::proxy
