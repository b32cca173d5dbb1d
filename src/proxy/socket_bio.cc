#include "proxy/socket_bio.h"

#include <cerrno>

#include "proxy/readiness.h"
#include "proxy/socket_fd.h"

namespace meshid::proxy {
namespace {

SocketBioState& stateOf(BIO* bio) {
  return *static_cast<SocketBioState*>(BIO_get_data(bio));
}

int readSocket(BIO* bio, char* buf, size_t len, size_t* got) {
  SocketBioState& s = stateOf(bio);
  BIO_clear_retry_flags(bio);
  *got = 0;
  ssize_t n = recvNow(s.fd, buf, len, 0);
  if (n < 0 || static_cast<size_t>(n) < len)
    s.ready->readDrained();
  if (n > 0) {
    *got = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    s.eof = true;
  } else if (wouldBlock(errno)) {
    BIO_set_retry_read(bio);
  }
  return 0;
}

int writeSocket(BIO* bio, const char* buf, size_t len, size_t* put) {
  SocketBioState& s = stateOf(bio);
  BIO_clear_retry_flags(bio);
  *put = 0;
  ssize_t n = sendNow(s.fd, buf, len);
  if (n >= 0) {
    *put = static_cast<size_t>(n);
    return 1;
  }
  if (wouldBlock(errno))
    BIO_set_retry_write(bio);
  return 0;
}

long controlSocket(BIO* bio, int cmd, long, void* ptr) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // nothing is buffered here
      return 1;
    case BIO_CTRL_EOF:
      return stateOf(bio).eof ? 1 : 0;
    case BIO_C_GET_FD:  // SSL_get_fd
      if (ptr != nullptr)
        *static_cast<int*>(ptr) = stateOf(bio).fd;
      return stateOf(bio).fd;
    default:  // no kTLS, no pending bytes, no duplication
      return 0;
  }
}

int createSocket(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Made once and never changed: BIO methods are shared by every thread.
const BIO_METHOD* socketMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "meshid socket");
    if (m != nullptr &&
        (BIO_meth_set_read_ex(m, readSocket) != 1 || BIO_meth_set_write_ex(m, writeSocket) != 1 ||
         BIO_meth_set_ctrl(m, controlSocket) != 1 || BIO_meth_set_create(m, createSocket) != 1)) {
      BIO_meth_free(m);
      m = nullptr;
    }
    return m;
  }();
  return method;
}

}  // namespace

BIO* newSocketBio(SocketBioState& state) {
  const BIO_METHOD* method = socketMethod();
  if (method == nullptr)
    return nullptr;
  BIO* bio = BIO_new(method);
  if (bio != nullptr)
    BIO_set_data(bio, &state);
  return bio;
}

}  // namespace meshid::proxy
