#include "pki/csr.h"

#include <fmt/format.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cstdint>
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

// Each byte's base64 value, or what else it may be inside a PEM body.
constexpr uint8_t kBase64Pad = 64, kBase64Space = 65, kBase64Invalid = 66;
constexpr std::array<uint8_t, 256> kBase64Values = [] {
  std::array<uint8_t, 256> v{};
  v.fill(kBase64Invalid);
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < kAlphabet.size(); ++i)
    v[static_cast<unsigned char>(kAlphabet[i])] = static_cast<uint8_t>(i);
  v['='] = kBase64Pad;
  for (char c : {'\n', '\r', ' ', '\t'})
    v[static_cast<unsigned char>(c)] = kBase64Space;
  return v;
}();

// A PEM body: lines of base64, each ending in a newline, with spaces, tabs
// and carriage returns allowed anywhere, padding only at its end, and no
// blank line (OpenSSL's reader takes what precedes a blank line for headers
// and drops it). One pass with a table, four characters at a time where it
// can: 0.75-1 µs for an RSA-2048 CSR's body, where a per-character filter
// into a copy for EVP_DecodeBlock took 2.4-2.9 µs (3.8 % of the CA's CPU
// issuing RSA-2048 certificates).
std::optional<std::string> decodeBase64Body(std::string_view body) {
  std::string out(body.size() / 4 * 3 + 3, '\0');
  char* write = out.data();
  // A complete quantum's bytes: 3, or fewer when it was padded.
  auto emit = [&write](uint32_t bits, int bytes) {
    write[0] = static_cast<char>(bits >> 16);
    if (bytes > 1)
      write[1] = static_cast<char>(bits >> 8);
    if (bytes > 2)
      write[2] = static_cast<char>(bits);
    write += bytes;
  };
  uint32_t quantum = 0;  // the current quantum's bits so far
  int filled = 0;        // characters in the current quantum
  int padding = 0;       // '=' seen; only the last quantum may hold them
  bool line_has_data = false;
  const auto* in = reinterpret_cast<const unsigned char*>(body.data());
  const unsigned char* const in_end = in + body.size();
  while (in != in_end) {
    // Whole quanta of four data characters, as 64-character lines hold.
    if (filled == 0 && padding == 0 && in_end - in >= 4) {
      uint32_t a = kBase64Values[in[0]], b = kBase64Values[in[1]], c = kBase64Values[in[2]],
               d = kBase64Values[in[3]];
      if ((a | b | c | d) < 64) {
        emit(a << 18 | b << 12 | c << 6 | d, 3);
        in += 4;
        line_has_data = true;
        continue;
      }
    }
    const unsigned char ch = *in++;
    uint8_t v = kBase64Values[ch];
    if (ch == '\n') {
      if (!line_has_data)
        return std::nullopt;
      line_has_data = false;
      continue;
    }
    if (v == kBase64Space)
      continue;
    if (v == kBase64Pad) {
      // "=" needs two characters before it in its quantum (so none may
      // follow a padded quantum).
      if (filled < 2)
        return std::nullopt;
      ++padding;
      v = 0;
    } else if (v == kBase64Invalid || padding > 0) {
      return std::nullopt;  // not base64, or data after "="
    }
    line_has_data = true;
    quantum = quantum << 6 | v;
    if (++filled == 4) {
      emit(quantum, 3 - padding);
      filled = 0;
    }
  }
  if (filled != 0 || line_has_data || write == out.data())
    return std::nullopt;
  out.resize(static_cast<size_t>(write - out.data()));
  return out;
}

// Whether only spaces, tabs and carriage returns follow `at` on its line.
bool restOfLineBlank(std::string_view text, size_t at) {
  size_t eol = text.find('\n', at);
  std::string_view rest = text.substr(at, eol == std::string_view::npos ? eol : eol - at);
  return rest.find_first_not_of(" \t\r") == std::string_view::npos;
}

// The one PEM block of a CSR, base64-decoded: its BEGIN and END lines start
// lines and hold nothing else, no headers, exactly one block in the input.
// What this accepts OpenSSL's PEM reader reads the same (tests/fuzz/fuzz_csr.cc).
Result<std::string> decodePem(std::string_view pem) {
  struct Label {
    std::string_view head, tail;
  };
  constexpr Label kLabels[] = {
      {"-----BEGIN CERTIFICATE REQUEST-----", "-----END CERTIFICATE REQUEST-----"},
      {"-----BEGIN NEW CERTIFICATE REQUEST-----", "-----END NEW CERTIFICATE REQUEST-----"}};
  size_t begin = pem.find("-----BEGIN");
  if (begin == std::string_view::npos ||
      pem.find("-----BEGIN", begin + 1) != std::string_view::npos) {
    return Error::invalidArgument(
        "expected exactly one PEM block in a certificate signing request");
  }
  auto malformed = [](std::string_view why) {
    return Error::invalidArgument(
        fmt::format("malformed PEM certificate signing request: {}", why));
  };
  for (const Label& label : kLabels) {
    if (pem.substr(begin, label.head.size()) != label.head)
      continue;
    if (begin != 0 && pem[begin - 1] != '\n')
      return malformed("the BEGIN line does not start a line");
    size_t head_end = begin + label.head.size();
    if (!restOfLineBlank(pem, head_end))
      return malformed("text after the BEGIN line");
    size_t body_at = pem.find('\n', head_end);
    size_t end = body_at == std::string_view::npos ? body_at : pem.find(label.tail, body_at);
    if (end == std::string_view::npos)
      return malformed("no END line");
    if (pem[end - 1] != '\n')
      return malformed("the END line does not start a line");
    if (!restOfLineBlank(pem, end + label.tail.size()))
      return malformed("text after the END line");
    ++body_at;
    std::optional<std::string> der = decodeBase64Body(pem.substr(body_at, end - body_at));
    if (!der)
      return malformed("not valid base64 lines");
    return std::move(*der);
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
