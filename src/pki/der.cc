#include "pki/der.h"

namespace meshid::pki::der {

bool Reader::next(Tlv* out) {
  size_t p = pos_;
  size_t n = data_.size();
  if (n - p < 2)
    return false;
  uint8_t tag = data_[p++];
  if ((tag & 0x1f) == 0x1f)
    return false;  // multi-byte tags: never needed here
  uint8_t first = data_[p++];
  size_t len = 0;
  if (first < 0x80) {
    len = first;
  } else {
    size_t count = first & 0x7f;
    // 0x80 is BER's indefinite form; more than 4 length bytes is never sane.
    if (count == 0 || count > 4 || n - p < count)
      return false;
    if (data_[p] == 0)
      return false;  // non-minimal: leading zero byte
    for (size_t i = 0; i < count; ++i)
      len = (len << 8) | data_[p++];
    if (len < 0x80)
      return false;  // non-minimal: fits the short form
  }
  if (n - p < len)
    return false;
  out->tag = tag;
  out->value = data_.subspan(p, len);
  out->whole = data_.subspan(pos_, p + len - pos_);
  pos_ = p + len;
  return true;
}

bool Reader::expect(uint8_t tag, Tlv* out) {
  Tlv t;
  size_t saved = pos_;
  if (!next(&t))
    return false;
  if (t.tag != tag) {
    pos_ = saved;
    return false;
  }
  *out = t;
  return true;
}

bool Reader::optional(uint8_t tag, Tlv* out) {
  if (empty() || data_[pos_] != tag)
    return false;
  return expect(tag, out);
}

void appendTlv(std::string& out, uint8_t tag, std::string_view content) {
  out.push_back(static_cast<char>(tag));
  size_t len = content.size();
  if (len < 0x80) {
    out.push_back(static_cast<char>(len));
  } else {
    char buf[4];
    int count = 0;
    for (size_t l = len; l > 0; l >>= 8)
      buf[count++] = static_cast<char>(l & 0xff);
    out.push_back(static_cast<char>(0x80 | count));
    while (count > 0)
      out.push_back(buf[--count]);
  }
  out.append(content);
}

std::string tlv(uint8_t tag, std::string_view content) {
  std::string out;
  out.reserve(content.size() + 6);
  appendTlv(out, tag, content);
  return out;
}

}  // namespace meshid::pki::der
