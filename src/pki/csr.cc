#include "pki/csr.h"

#include <fmt/format.h>
#include <openssl/pem.h>

#include <algorithm>
#include <optional>

#include "pki/der.h"
#include "pki/key.h"
#include "pki/oids.h"
#include "pki/ossl_error.h"
#include "pki/public_key.h"

namespace meshid::pki {

using namespace std::literals;
namespace {

using der::Bytes;

// The one PEM block of a CSR, base64-decoded. No headers, nothing but
// whitespace inside, exactly one block in the input.
Result<std::string> decodePem(std::string_view pem) {
  constexpr std::string_view kLabels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"};
  size_t begin = pem.find("-----BEGIN ");
  if (pem.find("-----BEGIN", begin + 1) != std::string_view::npos) {
    return Error::invalidArgument(
        "expected exactly one PEM block in a certificate signing request");
  }
  for (std::string_view label : kLabels) {
    std::string head = "-----BEGIN " + std::string(label) + "-----";
    std::string tail = "-----END " + std::string(label) + "-----";
    if (pem.substr(begin, head.size()) != head)
      continue;
    size_t body_at = begin + head.size();
    size_t end = pem.find(tail, body_at);
    if (end == std::string_view::npos) {
      return Error::invalidArgument("malformed PEM certificate signing request: no END line");
    }
    std::string b64;
    b64.reserve(end - body_at);
    for (char c : pem.substr(body_at, end - body_at)) {
      if (c == '\n' || c == '\r' || c == ' ' || c == '\t')
        continue;
      bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '+' || c == '/' || c == '=';
      if (!ok)
        return Error::invalidArgument(
            "malformed PEM certificate signing request: not valid base64");
      b64.push_back(c);
    }
    if (b64.empty() || b64.size() % 4 != 0) {
      return Error::invalidArgument("malformed PEM certificate signing request: not valid base64");
    }
    size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
    if (b64.find('=') < b64.size() - pad) {
      return Error::invalidArgument("malformed PEM certificate signing request: not valid base64");
    }
    std::string der(b64.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
    if (n < 0)
      return Error::invalidArgument("malformed PEM certificate signing request: not valid base64");
    der.resize(static_cast<size_t>(n) - pad);
    return der;
  }
  return Error::invalidArgument("PEM block is not a CERTIFICATE REQUEST");
}

std::string ipString(Bytes b) {
  if (b.size() == 4)
    return fmt::format("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
  if (b.size() == 16) {
    std::string out;
    for (size_t i = 0; i < 16; i += 2)
      out += fmt::format("{}{:x}", i ? ":" : "", (b[i] << 8) | b[i + 1]);
    return out;
  }
  return "<malformed ip address>";
}

// GeneralNames into out; INVALID_ARGUMENT for malformed input or name types
// a workload has no business asking for.
Result<void> readSubjectAltNames(Bytes extn_value, ParsedCsr& out) {
  der::Reader outer(extn_value);
  der::Tlv names;
  if (!outer.expect(der::kSequence, &names) || !outer.empty()) {
    return Error::invalidArgument("certificate signing request has a malformed subjectAltName");
  }
  der::Reader r(names.value);
  der::Tlv gn;
  while (!r.empty()) {
    if (!r.next(&gn)) {
      return Error::invalidArgument("certificate signing request has a malformed subjectAltName");
    }
    std::string text(der::asView(gn.value));
    bool ascii =
        std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    switch (gn.tag) {
      case 0x86:  // [6] uniformResourceIdentifier
      case 0x82:  // [2] dNSName
      case 0x81:  // [1] rfc822Name
        if (!ascii) {
          return Error::invalidArgument(
              "certificate signing request has a subjectAltName that is not printable ASCII");
        }
        (gn.tag == 0x86   ? out.uri_sans
         : gn.tag == 0x82 ? out.dns_sans
                          : out.email_sans)
            .push_back(std::move(text));
        break;
      case 0x87:  // [7] iPAddress
        if (gn.value.size() != 4 && gn.value.size() != 16) {
          return Error::invalidArgument("certificate signing request has a malformed IP SAN");
        }
        out.ip_sans.push_back(ipString(gn.value));
        break;
      default:
        return Error::invalidArgument(
            "certificate signing request has an unsupported subjectAltName type");
    }
  }
  return okResult();
}

// Attributes [0]: only extensionRequest is read; its SAN goes to out.
Result<void> readAttributes(Bytes attrs, ParsedCsr& out) {
  der::Reader r(attrs);
  int san_count = 0, ext_requests = 0;
  der::Tlv attr;
  while (!r.empty()) {
    der::Tlv oid, values, exts;
    if (!r.expect(der::kSequence, &attr)) {
      return Error::invalidArgument("certificate signing request has a malformed attribute");
    }
    der::Reader a(attr.value);
    if (!a.expect(der::kOid, &oid) || !a.expect(der::kSet, &values) || !a.empty()) {
      return Error::invalidArgument("certificate signing request has a malformed attribute");
    }
    if (!der::equals(oid.value, oid::kExtensionRequest))
      continue;
    if (++ext_requests > 1) {
      return Error::invalidArgument("certificate signing request has two extension requests");
    }
    der::Reader v(values.value);
    if (!v.expect(der::kSequence, &exts) || !v.empty()) {
      return Error::invalidArgument(
          "certificate signing request has a malformed extension request");
    }
    der::Reader e(exts.value);
    der::Tlv ext;
    while (!e.empty()) {
      der::Tlv ext_oid, critical, value;
      if (!e.expect(der::kSequence, &ext)) {
        return Error::invalidArgument("certificate signing request has a malformed extension");
      }
      der::Reader x(ext.value);
      if (!x.expect(der::kOid, &ext_oid)) {
        return Error::invalidArgument("certificate signing request has a malformed extension");
      }
      if (x.optional(der::kBoolean, &critical) &&
          (critical.value.size() != 1 || (critical.value[0] != 0xff && critical.value[0] != 0))) {
        return Error::invalidArgument("certificate signing request has a malformed extension");
      }
      if (!x.expect(der::kOctetString, &value) || !x.empty()) {
        return Error::invalidArgument("certificate signing request has a malformed extension");
      }
      if (!der::equals(ext_oid.value, oid::kSubjectAltName))
        continue;
      if (++san_count > 1) {
        return Error::invalidArgument(
            "certificate signing request has more than one subjectAltName extension");
      }
      MESHID_RETURN_IF_ERROR(readSubjectAltNames(value.value, out));
    }
  }
  return okResult();
}

std::string subjectText(const der::Tlv& subject) {
  if (subject.value.empty())
    return "";
  const unsigned char* p = subject.whole.data();
  X509NamePtr name(d2i_X509_NAME(nullptr, &p, static_cast<long>(subject.whole.size())));
  if (!name) {
    drainOpensslErrors();
    return "<malformed subject>";
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name.get(), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

Result<ParsedCsr> parseCsr(std::string_view input, SignatureVerifier* verifier) {
  if (input.empty()) {
    return Error::invalidArgument("empty certificate signing request");
  }
  if (input.size() > kMaxCsrBytes) {
    return Error::invalidArgument(fmt::format(
        "certificate signing request is larger than the limit of {} bytes", kMaxCsrBytes));
  }
  std::string pem_der;
  Bytes data = der::asBytes(input);
  if (input.find("-----BEGIN") != std::string_view::npos) {
    MESHID_ASSIGN_OR_RETURN(pem_der, decodePem(input));
    data = der::asBytes(pem_der);
  }
  auto malformed = [] { return Error::invalidArgument("malformed certificate signing request"); };
  der::Reader top(data);
  der::Tlv csr, info, sig_alg, sig, version, subject, spki, attrs, sig_oid, sig_params;
  if (!top.expect(der::kSequence, &csr))
    return malformed();
  if (!top.empty())
    return Error::invalidArgument("certificate signing request has trailing bytes");
  der::Reader c(csr.value);
  if (!c.expect(der::kSequence, &info) || !c.expect(der::kSequence, &sig_alg) ||
      !c.expect(der::kBitString, &sig) || !c.empty()) {
    return malformed();
  }
  der::Reader i(info.value);
  if (!i.expect(der::kInteger, &version) || version.value.size() != 1 || version.value[0] != 0) {
    return Error::invalidArgument("certificate signing request is not version 1");
  }
  if (!i.expect(der::kSequence, &subject) || !i.expect(der::kSequence, &spki))
    return malformed();
  bool has_attrs = i.optional(der::kContext0Constructed, &attrs);
  if (!i.empty())
    return malformed();
  der::Reader sa(sig_alg.value);
  if (!sa.expect(der::kOid, &sig_oid))
    return malformed();
  // Parameters: absent (ECDSA, Ed25519) or NULL (RSA PKCS#1 v1.5).
  if (!sa.empty() &&
      (!sa.expect(der::kNull, &sig_params) || !sig_params.value.empty() || !sa.empty())) {
    return Error::invalidArgument(
        "certificate signing request signature algorithm is not supported");
  }
  if (sig.value.empty() || sig.value[0] != 0)
    return malformed();

  ParsedCsr out;
  out.spki_der.assign(der::asView(spki.whole));
  std::optional<SignatureVerifier> own;
  if (verifier == nullptr)
    verifier = &own.emplace();
  MESHID_ASSIGN_OR_RETURN(out.key, verifier->setKey(spki.whole));
  auto verified = verifier->verify(sig_oid.value, info.whole, sig.value.subspan(1));
  if (!verified.ok()) {
    return Error::invalidArgument(
        "certificate signing request signature does not verify with its own key (" +
        verified.error().message + ")");
  }
  if (has_attrs) {
    MESHID_RETURN_IF_ERROR(readAttributes(attrs.value, out));
  }
  out.subject = subjectText(subject);
  return out;
}

Result<SpiffeId> csrSpiffeId(const ParsedCsr& csr) {
  if (csr.uri_sans.empty()) {
    return Error::invalidArgument("certificate signing request has no URI SAN (no SPIFFE ID)");
  }
  if (csr.uri_sans.size() > 1) {
    return Error::invalidArgument(
        fmt::format("certificate signing request has {} URI SANs; exactly one SPIFFE ID is allowed",
                    csr.uri_sans.size()));
  }
  MESHID_ASSIGN_OR_RETURN(SpiffeId id, SpiffeId::parse(csr.uri_sans.front()));
  if (id.isTrustDomainId()) {
    return Error::invalidArgument(
        fmt::format("spiffe id {} has no path: a workload identity needs one", id.str()));
  }
  return id;
}

Result<X509ReqPtr> buildCsr(const EVP_PKEY* key, const SpiffeId& id) {
  MESHID_RETURN_IF_ERROR(checkKeyStrength(key));
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);  // v1, the only defined CSR version
  if (X509_REQ_set_pubkey(req.get(), const_cast<EVP_PKEY*>(key)) != 1) {
    return opensslError(Code::kInternal, "cannot set CSR public key");
  }
  GeneralNamesPtr names(GENERAL_NAMES_new());
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* uri = ASN1_IA5STRING_new();
  ASN1_STRING_set(uri, id.str().data(), static_cast<int>(id.str().size()));
  GENERAL_NAME_set0_value(gn, GEN_URI, uri);
  sk_GENERAL_NAME_push(names.get(), gn);
  ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  // Critical: the subject is empty, so the SAN carries the whole identity.
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, 1, names.get());
  if (san == nullptr) {
    return opensslError(Code::kInternal, "cannot encode subjectAltName");
  }
  sk_X509_EXTENSION_push(exts.get(), san);
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return opensslError(Code::kInternal, "cannot add CSR extensions");
  }
  if (X509_REQ_sign(req.get(), const_cast<EVP_PKEY*>(key), signatureDigestFor(key)) <= 0) {
    return opensslError(Code::kInternal, "cannot sign certificate signing request");
  }
  return req;
}

std::string csrToPem(const X509_REQ* req) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace meshid::pki
