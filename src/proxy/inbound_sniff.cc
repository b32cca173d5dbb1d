#include "proxy/inbound_sniff.h"

namespace meshid::proxy {
namespace {

constexpr unsigned char kTlsHandshakeRecord = 0x16;

}  // namespace

InboundPath sniffInbound(Mode mode, std::span<const unsigned char> peeked) {
  if (mode == Mode::kDisable)
    return InboundPath::kPlaintext;
  if (!peeked.empty() && peeked[0] == kTlsHandshakeRecord)
    return InboundPath::kTls;
  return mode == Mode::kStrict ? InboundPath::kRefused : InboundPath::kPlaintext;
}

}  // namespace meshid::proxy
