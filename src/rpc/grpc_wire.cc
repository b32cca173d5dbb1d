#include "rpc/grpc_wire.h"

#include <fmt/format.h>

namespace meshid::rpc {

namespace {
constexpr size_t kPrefixBytes = 5;
}

void appendFramedMessage(std::string& out, std::string_view message) {
  auto n = static_cast<uint32_t>(message.size());
  char prefix[kPrefixBytes] = {0, static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                               static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(prefix, kPrefixBytes);
  out.append(message);
}

std::string frameMessage(std::string_view message) {
  std::string out;
  out.reserve(kPrefixBytes + message.size());
  appendFramedMessage(out, message);
  return out;
}

Result<std::string_view> unframeRequest(std::string_view body, size_t max_bytes) {
  if (body.size() < kPrefixBytes) {
    return Error::internal(body.empty() ? "the request has no message"
                                        : "the request message's prefix is cut short");
  }
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(body[i])); };
  uint32_t flags = byte(0);
  uint64_t length = (byte(1) << 24) | (byte(2) << 16) | (byte(3) << 8) | byte(4);
  if (flags & 1) {
    return Error{Code::kUnimplemented,
                 "compressed messages are not accepted (grpc-accept-encoding: identity)"};
  }
  if (flags != 0)
    return Error::internal(fmt::format("unknown message flags {:#x}", flags));
  if (length > max_bytes) {
    return Error::resourceExhausted(
        fmt::format("received message larger than max ({} vs. {})", length, max_bytes));
  }
  std::string_view rest = body.substr(kPrefixBytes);
  if (rest.size() != length) {
    return Error::internal(rest.size() < length
                               ? "the request message is cut short"
                               : "a unary call carries exactly one request message");
  }
  return rest;
}

bool isGrpcContentType(std::string_view ct) {
  constexpr std::string_view kBase = "application/grpc";
  if (!ct.starts_with(kBase))
    return false;
  if (ct.size() == kBase.size())
    return true;
  char next = ct[kBase.size()];
  return next == '+' || next == ';';
}

std::string percentEncode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace meshid::rpc
