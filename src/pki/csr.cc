#include "pki/csr.h"

#include <fmt/format.h>
#include <openssl/pem.h>

#include "pki/general_names.h"
#include "pki/key.h"
#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

constexpr std::string_view kPemBegin = "-----BEGIN CERTIFICATE REQUEST-----";
constexpr std::string_view kPemBeginNew = "-----BEGIN NEW CERTIFICATE REQUEST-----";

Result<X509ReqPtr> decodeDer(const unsigned char* data, long len) {
  const unsigned char* p = data;
  X509_REQ* req = d2i_X509_REQ(nullptr, &p, len);
  if (req == nullptr) {
    return opensslError(Code::kInvalidArgument, "malformed certificate signing request");
  }
  X509ReqPtr owned(req);
  if (p != data + len) {
    return Error::invalidArgument("certificate signing request has trailing bytes");
  }
  return owned;
}

Result<X509ReqPtr> decodePem(std::string_view pem) {
  size_t first = pem.find("-----BEGIN");
  if (pem.find("-----BEGIN", first + 1) != std::string_view::npos) {
    return Error::invalidArgument("expected exactly one PEM block in a certificate signing request");
  }
  std::string_view block = pem.substr(first);
  if (!block.starts_with(kPemBegin) && !block.starts_with(kPemBeginNew)) {
    return Error::invalidArgument("PEM block is not a CERTIFICATE REQUEST");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name_raw = nullptr;
  char* header_raw = nullptr;
  unsigned char* data_raw = nullptr;
  long len = 0;
  if (PEM_read_bio(bio.get(), &name_raw, &header_raw, &data_raw, &len) != 1) {
    return opensslError(Code::kInvalidArgument, "malformed PEM certificate signing request");
  }
  OsslStringPtr name(name_raw), header(header_raw);
  OsslBytesPtr data(data_raw);
  return decodeDer(data.get(), len);
}

}  // namespace

Result<ParsedCsr> parseCsr(std::string_view input) {
  if (input.empty()) {
    return Error::invalidArgument("empty certificate signing request");
  }
  if (input.size() > kMaxCsrBytes) {
    return Error::invalidArgument(fmt::format(
        "certificate signing request is larger than the limit of {} bytes", kMaxCsrBytes));
  }
  Result<X509ReqPtr> decoded =
      input.find("-----BEGIN") != std::string_view::npos
          ? decodePem(input)
          : decodeDer(reinterpret_cast<const unsigned char*>(input.data()),
                      static_cast<long>(input.size()));
  if (!decoded.ok()) {
    return decoded.error();
  }
  ParsedCsr out;
  out.request = std::move(decoded).value();
  X509_REQ* req = out.request.get();

  EVP_PKEY* key = X509_REQ_get0_pubkey(req);
  if (key == nullptr) {
    return opensslError(Code::kInvalidArgument, "certificate signing request has no usable public key");
  }
  MESHID_RETURN_IF_ERROR(checkKeyStrength(key));
  if (X509_REQ_verify(req, key) != 1) {
    return opensslError(Code::kInvalidArgument,
                        "certificate signing request signature does not verify with its own key");
  }
  out.public_key = shareKey(key);

  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_REQ_get_subject_name(req), 0, XN_FLAG_RFC2253);
  char* sdata = nullptr;
  long slen = BIO_get_mem_data(bio.get(), &sdata);
  out.subject.assign(sdata, static_cast<size_t>(slen));

  ExtensionStackPtr exts(X509_REQ_get_extensions(req));
  drainOpensslErrors();  // a request without extensions leaves a benign error
  int san_count = 0;
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) {
      continue;
    }
    if (++san_count > 1) {
      return Error::invalidArgument(
          "certificate signing request has more than one subjectAltName extension");
    }
    GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    if (!names) {
      return opensslError(Code::kInvalidArgument,
                          "certificate signing request has a malformed subjectAltName");
    }
    SubjectAltNames sans = collectSubjectAltNames(names.get());
    if (sans.other > 0) {
      return Error::invalidArgument(
          "certificate signing request has an unsupported subjectAltName type");
    }
    out.uri_sans = std::move(sans.uri);
    out.dns_sans = std::move(sans.dns);
    out.ip_sans = std::move(sans.ip);
    out.email_sans = std::move(sans.email);
  }
  return out;
}

Result<SpiffeId> csrSpiffeId(const ParsedCsr& csr) {
  if (csr.uri_sans.empty()) {
    return Error::invalidArgument("certificate signing request has no URI SAN (no SPIFFE ID)");
  }
  if (csr.uri_sans.size() > 1) {
    return Error::invalidArgument(fmt::format(
        "certificate signing request has {} URI SANs; exactly one SPIFFE ID is allowed",
        csr.uri_sans.size()));
  }
  MESHID_ASSIGN_OR_RETURN(SpiffeId id, SpiffeId::parse(csr.uri_sans.front()));
  if (id.isTrustDomainId()) {
    return Error::invalidArgument(fmt::format(
        "spiffe id {} has no path: a workload identity needs one", id.str()));
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
