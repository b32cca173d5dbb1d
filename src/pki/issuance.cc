#include "pki/issuance.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>

#include "common/duration.h"
#include "pki/certificate.h"
#include "pki/key.h"
#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

constexpr int kUsageDigitalSignature = 0;
constexpr int kUsageKeyEncipherment = 2;
constexpr int kUsageKeyCertSign = 5;
constexpr int kUsageCrlSign = 6;

Result<Asn1IntegerPtr> randomSerial() {
  std::array<unsigned char, 16> buf{};
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    return opensslError(Code::kInternal, "cannot draw a random serial number");
  }
  // Positive (top bit clear) and always 16 bytes long (first byte non-zero):
  // 126 bits of entropy, well over the 64 the profile asks for.
  buf[0] = static_cast<unsigned char>((buf[0] & 0x7f) | 0x01);
  BignumPtr bn(BN_bin2bn(buf.data(), static_cast<int>(buf.size()), nullptr));
  Asn1IntegerPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (!serial) {
    return opensslError(Code::kInternal, "cannot encode serial number");
  }
  return serial;
}

Result<void> addExtension(X509* cert, int nid, void* value, bool critical) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) != 1) {
    return opensslError(Code::kInternal, fmt::format("cannot add extension {}", OBJ_nid2sn(nid)));
  }
  return okResult();
}

Result<void> addKeyUsage(X509* cert, std::initializer_list<int> bits) {
  Asn1BitStringPtr ku(ASN1_BIT_STRING_new());
  for (int bit : bits) {
    ASN1_BIT_STRING_set_bit(ku.get(), bit, 1);
  }
  return addExtension(cert, NID_key_usage, ku.get(), true);
}

Result<void> addBasicConstraints(X509* cert, bool ca, std::optional<int> path_length) {
  BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
  bc->ca = ca ? 0xff : 0;
  if (ca && path_length) {
    bc->pathlen = ASN1_INTEGER_new();
    ASN1_INTEGER_set(bc->pathlen, *path_length);
  }
  return addExtension(cert, NID_basic_constraints, bc.get(), true);
}

void pushName(GENERAL_NAMES* names, int type, const std::string& value) {
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
  GENERAL_NAME_set0_value(gn, type, s);
  sk_GENERAL_NAME_push(names, gn);
}

Result<void> addSans(X509* cert, const std::string& uri, const std::vector<std::string>& dns,
                     const std::vector<std::string>& ips, bool critical) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  pushName(names.get(), GEN_URI, uri);
  for (const auto& d : dns) {
    if (d.empty() || d.size() > 253) {
      return Error::invalidArgument(fmt::format("invalid DNS name \"{}\"", d.substr(0, 40)));
    }
    pushName(names.get(), GEN_DNS, d);
  }
  for (const auto& ip : ips) {
    Asn1OctetStringPtr octets(a2i_IPADDRESS(ip.c_str()));
    if (!octets) {
      drainOpensslErrors();
      return Error::invalidArgument(fmt::format("invalid IP address \"{}\"", ip.substr(0, 40)));
    }
    GENERAL_NAME* gn = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(gn, GEN_IPADD, octets.release());
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  return addExtension(cert, NID_subject_alt_name, names.get(), critical);
}

Result<void> addUriSan(X509* cert, const std::string& uri, bool critical) {
  return addSans(cert, uri, {}, {}, critical);
}

Result<Asn1OctetStringPtr> keyIdentifier(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
  if (X509_pubkey_digest(cert, EVP_sha1(), md, &len) != 1) {
    return opensslError(Code::kInternal, "cannot compute key identifier");
  }
  Asn1OctetStringPtr id(ASN1_OCTET_STRING_new());
  ASN1_OCTET_STRING_set(id.get(), md, static_cast<int>(len));
  return id;
}

// SKI from cert's own key; AKI names the issuer's SKI (or its key's hash when a
// foreign issuer has no SKI).
Result<void> addKeyIdentifiers(X509* cert, const X509* issuer) {
  MESHID_ASSIGN_OR_RETURN(Asn1OctetStringPtr ski, keyIdentifier(cert));
  MESHID_RETURN_IF_ERROR(addExtension(cert, NID_subject_key_identifier, ski.get(), false));
  AuthorityKeyIdPtr aki(AUTHORITY_KEYID_new());
  const ASN1_OCTET_STRING* issuer_ski = issuer ? X509_get0_subject_key_id(const_cast<X509*>(issuer)) : nullptr;
  if (issuer_ski != nullptr) {
    aki->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
  } else if (issuer != nullptr) {
    MESHID_ASSIGN_OR_RETURN(Asn1OctetStringPtr id, keyIdentifier(issuer));
    aki->keyid = id.release();
  } else {
    aki->keyid = ASN1_OCTET_STRING_dup(ski.get());
  }
  return addExtension(cert, NID_authority_key_identifier, aki.get(), false);
}

Result<void> setValidity(X509* cert, SystemTime not_before, SystemTime not_after) {
  if (!ASN1_TIME_set(X509_getm_notBefore(cert), std::chrono::system_clock::to_time_t(not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert), std::chrono::system_clock::to_time_t(not_after))) {
    return opensslError(Code::kInternal, "cannot set validity");
  }
  return okResult();
}

// Everything a signing certificate must satisfy before it signs anything.
Result<void> checkSigningCertificate(const X509* ca_cert, const KeySigner& signer, SystemTime now) {
  if (!isCa(ca_cert)) {
    return Error::failedPrecondition(
        fmt::format("signing certificate {} is not a CA (basicConstraints CA:TRUE missing)",
                    subjectString(ca_cert)));
  }
  uint32_t ku = X509_get_key_usage(const_cast<X509*>(ca_cert));
  if (ku != UINT32_MAX && (ku & KU_KEY_CERT_SIGN) == 0) {
    return Error::failedPrecondition(fmt::format(
        "signing certificate {} lacks the keyCertSign key usage", subjectString(ca_cert)));
  }
  if (!samePublicKey(X509_get0_pubkey(ca_cert), signer.publicKey())) {
    return Error::failedPrecondition(fmt::format(
        "signing key does not match the public key of signing certificate {}",
        subjectString(ca_cert)));
  }
  if (notAfter(ca_cert) <= now) {
    return Error::failedPrecondition(fmt::format("signing certificate {} expired at {}",
                                                 subjectString(ca_cert),
                                                 formatRfc3339(notAfter(ca_cert))));
  }
  if (notBefore(ca_cert) > now) {
    return Error::failedPrecondition(fmt::format("signing certificate {} is not valid before {}",
                                                 subjectString(ca_cert),
                                                 formatRfc3339(notBefore(ca_cert))));
  }
  return okResult();
}

// The fields every certificate meshid makes shares.
Result<X509Ptr> newCertificate(const EVP_PKEY* public_key, Seconds lifetime, SystemTime now,
                               const X509* issuer) {
  if (public_key == nullptr) {
    return Error::invalidArgument("no public key to certify");
  }
  if (lifetime.count() <= 0) {
    return Error::invalidArgument("certificate lifetime must be positive");
  }
  MESHID_RETURN_IF_ERROR(checkKeyStrength(public_key));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  MESHID_ASSIGN_OR_RETURN(Asn1IntegerPtr serial, randomSerial());
  X509_set_serialNumber(cert.get(), serial.get());
  if (X509_set_pubkey(cert.get(), const_cast<EVP_PKEY*>(public_key)) != 1) {
    return opensslError(Code::kInvalidArgument, "cannot use public key");
  }
  SystemTime not_after = now + lifetime;
  if (issuer != nullptr) {
    not_after = std::min(not_after, notAfter(issuer));  // never outlive the signer
  }
  MESHID_RETURN_IF_ERROR(setValidity(cert.get(), now - backdateFor(lifetime), not_after));
  return cert;
}

X509NamePtr caName(const TrustDomain& td, const std::string& cn) {
  X509NamePtr name(X509_NAME_new());
  auto add = [&](const char* field, const std::string& v) {
    X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(v.data()),
                               static_cast<int>(v.size()), -1, 0);
  };
  add("O", td.name());
  add("CN", cn);
  return name;
}

Result<X509Ptr> issueCa(const CaCertificateRequest& request, const X509* parent,
                        const KeySigner& signer) {
  if (request.common_name.empty() || request.common_name.size() > 64) {
    return Error::invalidArgument("CA common name must be 1 to 64 characters");
  }
  if (request.path_length && *request.path_length < 0) {
    return Error::invalidArgument("path length must not be negative");
  }
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert,
                          newCertificate(request.public_key, request.lifetime, request.now, parent));
  X509NamePtr subject = caName(request.trust_domain, request.common_name);
  X509_set_subject_name(cert.get(), subject.get());
  X509_set_issuer_name(cert.get(), parent ? X509_get_subject_name(parent) : subject.get());
  MESHID_RETURN_IF_ERROR(addBasicConstraints(cert.get(), true, request.path_length));
  MESHID_RETURN_IF_ERROR(addKeyUsage(cert.get(), {kUsageKeyCertSign, kUsageCrlSign}));
  MESHID_RETURN_IF_ERROR(addKeyIdentifiers(cert.get(), parent));
  MESHID_RETURN_IF_ERROR(
      addUriSan(cert.get(), SpiffeId::forTrustDomain(request.trust_domain).str(), false));
  MESHID_RETURN_IF_ERROR(signer.signCertificate(cert.get()));
  return cert;
}

}  // namespace

Seconds backdateFor(Seconds lifetime) { return std::min(Seconds(60), lifetime / 10); }

Result<X509Ptr> issueX509Svid(const SvidRequest& request, const X509* ca_cert,
                              const KeySigner& ca_signer) {
  if (request.spiffe_id.isTrustDomainId()) {
    return Error::invalidArgument(fmt::format(
        "spiffe id {} has no path: a workload identity needs one", request.spiffe_id.str()));
  }
  MESHID_RETURN_IF_ERROR(checkSigningCertificate(ca_cert, ca_signer, request.now));
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, newCertificate(request.public_key, request.lifetime,
                                                       request.now, ca_cert));
  X509NamePtr empty(X509_NAME_new());
  X509_set_subject_name(cert.get(), empty.get());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert));
  MESHID_RETURN_IF_ERROR(addBasicConstraints(cert.get(), false, std::nullopt));
  if (EVP_PKEY_get_base_id(request.public_key) == EVP_PKEY_RSA) {
    MESHID_RETURN_IF_ERROR(addKeyUsage(cert.get(), {kUsageDigitalSignature, kUsageKeyEncipherment}));
  } else {
    MESHID_RETURN_IF_ERROR(addKeyUsage(cert.get(), {kUsageDigitalSignature}));
  }
  ExtKeyUsagePtr eku(sk_ASN1_OBJECT_new_null());
  sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth));
  sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_client_auth));
  MESHID_RETURN_IF_ERROR(addExtension(cert.get(), NID_ext_key_usage, eku.get(), false));
  MESHID_RETURN_IF_ERROR(addKeyIdentifiers(cert.get(), ca_cert));
  // Critical: with an empty subject the SAN is the whole identity (RFC 5280).
  MESHID_RETURN_IF_ERROR(addSans(cert.get(), request.spiffe_id.str(), request.dns_names,
                                 request.ip_addresses, true));
  MESHID_RETURN_IF_ERROR(ca_signer.signCertificate(cert.get()));
  return cert;
}

Result<X509Ptr> issueRootCertificate(const CaCertificateRequest& request,
                                     const KeySigner& signer) {
  if (!samePublicKey(request.public_key, signer.publicKey())) {
    return Error::invalidArgument("a root certificate must be signed by its own key");
  }
  return issueCa(request, nullptr, signer);
}

Result<X509Ptr> issueIntermediateCertificate(const CaCertificateRequest& request,
                                             const X509* parent, const KeySigner& parent_signer) {
  MESHID_RETURN_IF_ERROR(checkSigningCertificate(parent, parent_signer, request.now));
  long parent_pathlen = X509_get_pathlen(const_cast<X509*>(parent));
  if (parent_pathlen == 0) {
    return Error::failedPrecondition(fmt::format(
        "{} has path length 0 and may not sign another CA", subjectString(parent)));
  }
  if (parent_pathlen > 0 && request.path_length && *request.path_length >= parent_pathlen) {
    return Error::invalidArgument(fmt::format(
        "path length {} does not fit under {} (path length {})", *request.path_length,
        subjectString(parent), parent_pathlen));
  }
  return issueCa(request, parent, parent_signer);
}

}  // namespace meshid::pki
