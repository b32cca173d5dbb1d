// parseCsr (a hand-written DER path) on arbitrary bytes, checked against
// OpenSSL's own decoder (TESTING.md §3): whatever we accept as DER,
// d2i_X509_REQ must decode whole, X509_REQ_verify must verify, and OpenSSL
// must read the same URI and DNS SANs and the same public key. Whatever we
// accept as PEM, OpenSSL's PEM reader must read as a CERTIFICATE REQUEST
// block whose contents pass the same checks.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "pki/csr.h"
#include "pki/general_names.h"
#include "pki/key.h"
#include "pki/ossl.h"
#include "pki/public_key.h"

namespace {

// The contents of the one PEM block OpenSSL's reader finds in `pem`, which
// must be a certificate request's.
std::string openSslPemContents(std::string_view pem) {
  meshid::pki::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* contents = nullptr;
  long len = 0;
  if (!bio || PEM_read_bio(bio.get(), &name, &header, &contents, &len) != 1)
    std::abort();
  meshid::pki::OsslStringPtr owned_name(name), owned_header(header);
  meshid::pki::OsslBytesPtr owned_contents(contents);
  std::string_view n(name);
  if ((n != "CERTIFICATE REQUEST" && n != "NEW CERTIFICATE REQUEST") || header[0] != '\0')
    std::abort();
  return std::string(reinterpret_cast<const char*>(contents), static_cast<size_t>(len));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // One verifier for every input, as a CA thread keeps one: a key left from
  // an earlier input must never make this one's signature pass or fail.
  static meshid::pki::SignatureVerifier verifier;
  auto csr = meshid::pki::parseCsr(input, &verifier);
  if (csr.ok()) {
    std::string der(input);
    if (input.find("-----BEGIN") != std::string_view::npos)
      der = openSslPemContents(input);  // aborts unless OpenSSL reads the block
    const auto* start = reinterpret_cast<const unsigned char*>(der.data());
    const unsigned char* p = start;
    meshid::pki::X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
    if (!req || p != start + der.size())
      std::abort();
    EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
    if (key == nullptr || X509_REQ_verify(req.get(), key) != 1)
      std::abort();
    auto ours = meshid::pki::publicKeyFromSpki(meshid::pki::der::asBytes(csr->spki_der));
    if (!ours.ok() || !meshid::pki::samePublicKey(key, ours->get()) ||
        csr->key.description != meshid::pki::describeKey(key))
      std::abort();
    meshid::pki::ExtensionStackPtr exts(X509_REQ_get_extensions(req.get()));
    meshid::pki::SubjectAltNames sans;
    for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
      X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
      if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name)
        continue;
      meshid::pki::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
      if (!names)
        std::abort();
      sans = meshid::pki::collectSubjectAltNames(names.get());
    }
    if (sans.uri != csr->uri_sans || sans.dns != csr->dns_sans)
      std::abort();
  }
  if (csr.ok()) {
    (void)meshid::pki::csrSpiffeId(*csr);
  }
  ERR_clear_error();
  return 0;
}
