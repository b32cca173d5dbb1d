#include "pki/general_names.h"

#include <fmt/format.h>

namespace meshid::pki {
namespace {

std::string asn1String(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string ipString(const ASN1_OCTET_STRING* ip) {
  const unsigned char* b = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  if (len == 4) {
    return fmt::format("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
  }
  if (len == 16) {
    std::string out;
    for (int i = 0; i < 16; i += 2) {
      out += fmt::format("{}{:x}", i ? ":" : "", (b[i] << 8) | b[i + 1]);
    }
    return out;
  }
  return "<malformed ip address>";
}

}  // namespace

SubjectAltNames collectSubjectAltNames(const GENERAL_NAMES* names) {
  SubjectAltNames out;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    switch (gn->type) {
      case GEN_URI:
        out.uri.push_back(asn1String(gn->d.uniformResourceIdentifier));
        break;
      case GEN_DNS:
        out.dns.push_back(asn1String(gn->d.dNSName));
        break;
      case GEN_EMAIL:
        out.email.push_back(asn1String(gn->d.rfc822Name));
        break;
      case GEN_IPADD:
        out.ip.push_back(ipString(gn->d.iPAddress));
        break;
      default:
        ++out.other;
        break;
    }
  }
  return out;
}

}  // namespace meshid::pki
