// The proxy's TLS 1.3 record layer (Tls13Stream) reading hostile bytes from
// the peer. Input: a control byte, then bytes.
//   - Low bit 0: the bytes are the wire, fed in pieces whose sizes come
//     from the control byte, read with a small buffer. Whatever they are,
//     the stream never returns more than arrived, and once it ends (kEnd,
//     kError) it stays ended.
//   - Low bit 1: the bytes are application data split into records by the
//     stream's own writer under the peer's key; the reader returns exactly
//     them, whatever the pieces.
#include <openssl/crypto.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "proxy/buffer_pool.h"
#include "proxy/tls13_stream.h"
#include "require.h"

namespace {

using meshid::fuzz::require;
using meshid::proxy::BufferPool;
using meshid::proxy::Tls13Stream;
using meshid::proxy::Tls13Suite;
using meshid::proxy::TrafficSecret;

std::unique_ptr<Tls13Stream> makeStream(BufferPool& pool, Tls13Suite suite) {
  const std::vector<uint8_t> bytes(suite == Tls13Suite::kAes256GcmSha384 ? 48 : 32, 0x42);
  TrafficSecret secret(bytes);
  return Tls13Stream::create(Tls13Stream::Role::kServer, {suite, secret, 0, secret, 0}, pool);
}

// Feeds `wire` in pieces of `piece` bytes and reads with `cap` bytes of room.
std::string readAll(Tls13Stream& s, const std::string& wire, size_t piece, size_t cap,
                    Tls13Stream::Status* last) {
  std::string out;
  std::vector<char> buf(cap);
  size_t at = 0;
  bool ended = false;
  for (;;) {
    const auto r = s.read(buf.data(), buf.size());
    if (ended)
      require(r.bytes == 0 &&
              (r.status == Tls13Stream::Status::kEnd || r.status == Tls13Stream::Status::kError));
    if (r.status == Tls13Stream::Status::kData) {
      require(r.bytes > 0 && r.bytes <= cap);
      out.append(buf.data(), r.bytes);
      continue;
    }
    *last = r.status;
    if (r.status != Tls13Stream::Status::kNeedMore) {
      if (ended)
        return out;
      ended = true;  // read once more: it must stay ended
      continue;
    }
    if (at == wire.size())
      return out;
    const auto space = s.inputSpace();
    require(space.size() >= Tls13Stream::kMaxRecordBytes || space.size() >= wire.size() - at);
    const size_t n = std::min({piece, space.size(), wire.size() - at});
    std::memcpy(space.data(), wire.data() + at, n);
    s.received(n);
    at += n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const uint8_t control = data[0];
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t piece = 1 + ((control >> 1) & 0x0f) * 97;
  const size_t cap = 1 + ((control >> 5) & 0x07) * 5000;
  const Tls13Suite suite = static_cast<Tls13Suite>((control >> 3) % 3);
  BufferPool pool;
  auto reader = makeStream(pool, suite);
  require(reader != nullptr);
  Tls13Stream::Status last = Tls13Stream::Status::kNeedMore;

  if ((control & 1) == 0) {
    const std::string out = readAll(*reader, bytes, piece, cap, &last);
    require(out.size() <= bytes.size());
    if (last == Tls13Stream::Status::kError)
      require(!reader->error().empty());
    return 0;
  }
  // Application data sealed by a writer with the same keys.
  auto writer = makeStream(pool, suite);
  require(writer != nullptr);
  std::string wire;
  std::vector<char> out(BufferPool::kBufferBytes);
  size_t done = 0;
  while (done < bytes.size()) {
    // Writes of varying size, as the pipe hands them over.
    const size_t chunk = std::min(bytes.size() - done, piece * 3);
    size_t consumed = 0;
    const size_t n = writer->seal({bytes.data() + done, chunk}, out.data(), out.size(), &consumed);
    require(n > 0 && consumed > 0 && consumed <= chunk);
    wire.append(out.data(), n);
    done += consumed;
  }
  require(readAll(*reader, wire, piece, cap, &last) == bytes);
  require(last == Tls13Stream::Status::kNeedMore);
  return 0;
}
