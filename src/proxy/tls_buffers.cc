#include "proxy/tls_buffers.h"

#include <openssl/ssl.h>

namespace meshid::proxy {

TlsBufferUse::~TlsBufferUse() {
  if (kept_)
    keeper_->forget(*this);
}

void TlsBufferUse::startKeeping() {
  streak_ = 0;
  if (!keeper_ || !keeper_->admit(*this))
    return;  // at the limit: busy again later, asked again then
  SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  kept_ = true;
}

TlsBufferKeeper::~TlsBufferKeeper() {
  while (head_)
    forget(*head_);
}

bool TlsBufferKeeper::admit(TlsBufferUse& use) {
  if (kept() >= limit_)
    return false;
  const bool was_empty = head_ == nullptr;
  use.prev_ = nullptr;
  use.next_ = head_;
  if (head_)
    head_->prev_ = &use;
  head_ = &use;
  kept_.fetch_add(1, std::memory_order_relaxed);
  if (was_empty)
    armSweep(use.last_);
  return true;
}

void TlsBufferKeeper::forget(TlsBufferUse& use) {
  if (use.prev_)
    use.prev_->next_ = use.next_;
  else
    head_ = use.next_;
  if (use.next_)
    use.next_->prev_ = use.prev_;
  use.prev_ = use.next_ = nullptr;
  use.kept_ = false;
  use.streak_ = 0;
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
  for (TlsBufferUse* u = head_; u;) {
    TlsBufferUse* next = u->next_;
    // A record OpenSSL holds but the pipe has not read yet stays with its
    // buffer: freeing it would lose it.
    if (now - u->last_ >= rest_ && SSL_has_pending(u->ssl_) == 0)
      release(*u);
    u = next;
  }
}

void TlsBufferKeeper::armSweep(Clock::time_point now) {
  if (!loop_)
    return;
  sweep_timer_.set(*loop_, now + rest_, [this] {
    sweep(loop_->now());
    if (head_)
      armSweep(loop_->now());
  });
}

}  // namespace meshid::proxy
