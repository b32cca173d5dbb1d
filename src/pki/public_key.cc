#include "pki/public_key.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "pki/key.h"
#include "pki/oids.h"
#include "pki/ossl_error.h"

namespace meshid::pki {

using namespace std::literals;
namespace {

using der::Bytes;

// "secp256k1" (or the dotted OID) for messages; OBJ_* only on this error path.
std::string oidName(Bytes identifier) {
  std::string der = der::tlv(der::kOid, der::asView(identifier));
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>> obj(
      d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(der.size())));
  char buf[128] = "unknown";
  if (obj)
    OBJ_obj2txt(buf, sizeof buf, obj.get(), 0);
  drainOpensslErrors();
  return buf;
}

// A public-only key on `group`, made once; each CSR key is a duplicate with
// its own point (EVP_PKEY_dup + set1_encoded_public_key).
const EVP_PKEY* curveTemplate(const char* group) {
  EvpPkeyPtr gen(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group));
  unsigned char pub[200];
  size_t pub_len = 0;
  if (!gen || EVP_PKEY_get_octet_string_param(gen.get(), OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub,
                                              &pub_len) != 1) {
    return nullptr;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len),
      OSSL_PARAM_construct_end()};
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return nullptr;
  }
  return key;  // lives for the process
}

// The KeyType a CA can allow for an RSA modulus of `bits` bits, if any.
std::optional<KeyType> rsaKeyType(int bits) {
  switch (bits) {
    case 2048:
      return KeyType::kRsa2048;
    case 3072:
      return KeyType::kRsa3072;
    case 4096:
      return KeyType::kRsa4096;
    default:
      return std::nullopt;
  }
}

struct CurveInfo {
  std::optional<KeyType> type;  // none for P-521: accepted in a CSR, no KeyType a CA allows
  const char* description;
};
constexpr CurveInfo kCurves[] = {{KeyType::kEcP256, "ECDSA P-256"},
                                 {KeyType::kEcP384, "ECDSA P-384"},
                                 {std::nullopt, "ECDSA P-521"}};

// Index into kCurves, or -1 (with the message to refuse it with).
int curveIndex(Bytes curve_oid) {
  return der::equals(curve_oid, oid::kP256)   ? 0
         : der::equals(curve_oid, oid::kP384) ? 1
         : der::equals(curve_oid, oid::kP521) ? 2
                                              : -1;
}
Error curveRefused(Bytes curve_oid) {
  return Error::invalidArgument(fmt::format(
      "EC key on curve {} is not accepted: use P-256, P-384 or P-521", oidName(curve_oid)));
}
const EVP_PKEY* curveTemplateAt(int index) {
  static const EVP_PKEY* templates[] = {curveTemplate("P-256"), curveTemplate("P-384"),
                                        curveTemplate("P-521")};
  return templates[index];
}

// The curve OID of an EC SubjectPublicKeyInfo's parameters: named curves
// only, explicit parameters are refused (as Go and BoringSSL do).
Result<Bytes> namedCurve(Bytes parameters) {
  der::Reader a(parameters);
  der::Tlv params;
  if (!a.expect(der::kOid, &params) || !a.empty()) {
    return Error::invalidArgument(
        "EC key with explicit curve parameters is not accepted: use a named curve");
  }
  return params.value;
}

Error notOnCurve() {
  return opensslError(Code::kInvalidArgument, "EC public key is not a point on its curve");
}

Result<EvpPkeyPtr> ecKey(Bytes curve_oid, Bytes point) {
  int index = curveIndex(curve_oid);
  if (index < 0) {
    drainOpensslErrors();
    return curveRefused(curve_oid);
  }
  EvpPkeyPtr key(EVP_PKEY_dup(const_cast<EVP_PKEY*>(curveTemplateAt(index))));
  if (!key || point.empty() ||
      EVP_PKEY_set1_encoded_public_key(key.get(), point.data(), point.size()) != 1) {
    return notOnCurve();
  }
  return key;
}

// An RSA SubjectPublicKeyInfo's modulus and exponent (big-endian, positive):
// NULL algorithm parameters, then SEQUENCE { INTEGER n, INTEGER e }.
struct RsaNumbers {
  Bytes n;
  Bytes e;
};
Result<RsaNumbers> rsaNumbers(Bytes parameters, Bytes key_bits) {
  der::Reader a(parameters);
  der::Tlv params;
  if (!a.expect(der::kNull, &params) || !params.value.empty() || !a.empty())
    return Error::invalidArgument("RSA key algorithm must have NULL parameters");
  der::Reader outer(key_bits);
  der::Tlv seq, n, e;
  if (!outer.expect(der::kSequence, &seq) || !outer.empty())
    return Error::invalidArgument("malformed RSA public key");
  der::Reader r(seq.value);
  if (!r.expect(der::kInteger, &n) || !r.expect(der::kInteger, &e) || !r.empty() ||
      n.value.empty() || e.value.empty() || (n.value[0] & 0x80) || (e.value[0] & 0x80)) {
    return Error::invalidArgument("malformed RSA public key");
  }
  return RsaNumbers{n.value, e.value};
}

Result<EvpPkeyPtr> rsaKey(const RsaNumbers& rsa) {
  const Bytes& n = rsa.n;
  const Bytes& e = rsa.e;
  BignumPtr bn_n(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
  BignumPtr bn_e(BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get())) {
    return opensslError(Code::kInternal, "cannot build RSA key parameters");
  }
  std::unique_ptr<OSSL_PARAM, OsslDeleter<OSSL_PARAM_free>> params(
      OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return opensslError(Code::kInvalidArgument, "malformed RSA public key");
  }
  return EvpPkeyPtr(key);
}

struct SigAlg {
  int base_id;  // EVP_PKEY_EC / EVP_PKEY_RSA / EVP_PKEY_ED25519
  int digest_bits;
};

bool sigAlgFor(Bytes algorithm, SigAlg* out) {
  const struct {
    std::string_view oid;
    SigAlg alg;
  } table[] = {{oid::kEcdsaSha256, {EVP_PKEY_EC, 256}}, {oid::kEcdsaSha384, {EVP_PKEY_EC, 384}},
               {oid::kEcdsaSha512, {EVP_PKEY_EC, 512}}, {oid::kRsaSha256, {EVP_PKEY_RSA, 256}},
               {oid::kRsaSha384, {EVP_PKEY_RSA, 384}},  {oid::kRsaSha512, {EVP_PKEY_RSA, 512}},
               {oid::kEd25519, {EVP_PKEY_ED25519, 0}}};
  for (const auto& t : table) {
    if (der::equals(algorithm, t.oid)) {
      *out = t.alg;
      return true;
    }
  }
  return false;
}

// The signature algorithm `algorithm` names, if it is one a key of `base_id` makes.
Result<SigAlg> sigAlgForKey(Bytes algorithm, int base_id) {
  SigAlg alg{};
  if (!sigAlgFor(algorithm, &alg)) {
    return Error::invalidArgument(
        "signature algorithm is not supported: use ECDSA or RSA PKCS#1 v1.5 with SHA-2, or "
        "Ed25519");
  }
  if (alg.base_id != base_id)
    return Error::invalidArgument("signature algorithm does not fit the key");
  return alg;
}

}  // namespace

const EVP_MD* fetchedDigest(int bits) {
  static const EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static const EVP_MD* sha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  static const EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  return bits == 512 ? sha512 : bits == 384 ? sha384 : sha256;
}

Result<SpkiParts> splitSpki(Bytes spki) {
  der::Reader outer(spki);
  der::Tlv seq, alg, bits, oid;
  if (!outer.expect(der::kSequence, &seq) || !outer.empty()) {
    return Error::invalidArgument("malformed SubjectPublicKeyInfo");
  }
  der::Reader r(seq.value);
  if (!r.expect(der::kSequence, &alg) || !r.expect(der::kBitString, &bits) || !r.empty() ||
      bits.value.empty() || bits.value[0] != 0) {
    return Error::invalidArgument("malformed SubjectPublicKeyInfo");
  }
  der::Reader a(alg.value);
  if (!a.expect(der::kOid, &oid)) {
    return Error::invalidArgument("malformed SubjectPublicKeyInfo algorithm");
  }
  size_t params_at = oid.whole.size();
  return SpkiParts{oid.value, alg.value.subspan(params_at), bits.value.subspan(1)};
}

Result<EvpPkeyPtr> publicKeyFromSpki(Bytes spki) {
  MESHID_ASSIGN_OR_RETURN(SpkiParts parts, splitSpki(spki));
  Bytes key_bits = parts.key_bits;
  EvpPkeyPtr key;
  if (der::equals(parts.algorithm_oid, oid::kEcPublicKey)) {
    MESHID_ASSIGN_OR_RETURN(Bytes curve, namedCurve(parts.parameters));
    MESHID_ASSIGN_OR_RETURN(key, ecKey(curve, key_bits));
  } else if (der::equals(parts.algorithm_oid, oid::kRsaEncryption)) {
    MESHID_ASSIGN_OR_RETURN(RsaNumbers rsa, rsaNumbers(parts.parameters, key_bits));
    MESHID_ASSIGN_OR_RETURN(key, rsaKey(rsa));
  } else if (der::equals(parts.algorithm_oid, oid::kEd25519)) {
    if (!parts.parameters.empty() || key_bits.size() != 32) {
      return Error::invalidArgument("malformed Ed25519 public key");
    }
    key.reset(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key_bits.data(), 32));
    if (!key)
      return opensslError(Code::kInvalidArgument, "malformed Ed25519 public key");
  } else {
    return Error::invalidArgument("key algorithm is not accepted: use ECDSA, RSA or Ed25519");
  }
  MESHID_RETURN_IF_ERROR(checkKeyStrength(key.get()));
  return key;
}

Result<void> verifySignature(const EVP_PKEY* key, Bytes sig_alg_oid, Bytes data, Bytes signature) {
  MESHID_ASSIGN_OR_RETURN(SigAlg alg, sigAlgForKey(sig_alg_oid, EVP_PKEY_get_base_id(key)));
  EVP_PKEY* k = const_cast<EVP_PKEY*>(key);
  if (alg.base_id == EVP_PKEY_ED25519) {
    EvpMdCtxPtr md(EVP_MD_CTX_new());
    if (!md || EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, k) != 1 ||
        EVP_DigestVerify(md.get(), signature.data(), signature.size(), data.data(), data.size()) !=
            1) {
      return opensslError(Code::kInvalidArgument, "signature does not verify");
    }
    return okResult();
  }
  const EVP_MD* md = fetchedDigest(alg.digest_bits);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, k, nullptr));
  if (!ctx || EVP_Digest(data.data(), data.size(), digest, &digest_len, md, nullptr) != 1 ||
      EVP_PKEY_verify_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1 ||
      (alg.base_id == EVP_PKEY_RSA &&
       EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1)) {
    return opensslError(Code::kInternal, "cannot set up signature verification");
  }
  if (EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest, digest_len) != 1) {
    return opensslError(Code::kInvalidArgument, "signature does not verify");
  }
  return okResult();
}

PublicKeyInfo describePublicKey(const EVP_PKEY* key) {
  PublicKeyInfo info{.rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA,
                     .description = describeKey(key)};
  int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      info.type = rsaKeyType(bits);
      break;
    case EVP_PKEY_EC:
      if (bits == 256 || bits == 384)
        info.type = bits == 256 ? KeyType::kEcP256 : KeyType::kEcP384;
      break;
    case EVP_PKEY_ED25519:
      info.type = KeyType::kEd25519;
      break;
    default:
      break;
  }
  return info;
}

// One curve's reused key and its verify contexts (SHA-256/384/512).
struct SignatureVerifier::Curve {
  EvpPkeyPtr key;
  std::array<EvpPkeyCtxPtr, 3> contexts;
};

// The RSA key set last, as numbers, and scratch space for the arithmetic.
struct SignatureVerifier::Rsa {
  BignumPtr n{BN_new()};
  BignumPtr e{BN_new()};
  BignumPtr s{BN_new()};
  BignumPtr m{BN_new()};
  std::unique_ptr<BN_CTX, OsslDeleter<BN_CTX_free>> ctx{BN_CTX_new()};
  int bits = 0;
};

namespace {

// DER of DigestInfo's AlgorithmIdentifier + OCTET STRING header, per digest
// (RFC 8017 §9.2 note 1); the digest follows.
std::string_view digestInfoPrefix(int digest_bits) {
  switch (digest_bits) {
    case 384:
      return "\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30"sv;
    case 512:
      return "\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40"sv;
    default:
      return "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"sv;
  }
}

// The exponents keys are made with (65537 nearly always); 1 would make any
// "signature" verify, and an even one is no RSA key.
constexpr size_t kMaxRsaExponentBytes = 4;

}  // namespace

SignatureVerifier::SignatureVerifier() = default;
SignatureVerifier::~SignatureVerifier() = default;

Result<PublicKeyInfo> SignatureVerifier::setKey(Bytes spki) {
  curve_ = nullptr;
  other_key_.reset();
  rsa_set_ = false;
  MESHID_ASSIGN_OR_RETURN(SpkiParts parts, splitSpki(spki));
  if (der::equals(parts.algorithm_oid, oid::kRsaEncryption))
    return setRsaKey(parts);
  if (!der::equals(parts.algorithm_oid, oid::kEcPublicKey)) {
    MESHID_ASSIGN_OR_RETURN(other_key_, publicKeyFromSpki(spki));
    return describePublicKey(other_key_.get());
  }
  // publicKeyFromSpki's checks, on this curve's reused key.
  MESHID_ASSIGN_OR_RETURN(Bytes curve_oid, namedCurve(parts.parameters));
  int index = curveIndex(curve_oid);
  if (index < 0)
    return curveRefused(curve_oid);
  std::unique_ptr<Curve>& curve = curves_[static_cast<size_t>(index)];
  if (!curve) {
    auto made = std::make_unique<Curve>();
    made->key.reset(EVP_PKEY_dup(const_cast<EVP_PKEY*>(curveTemplateAt(index))));
    if (!made->key)
      return opensslError(Code::kInternal, "cannot set up signature verification");
    curve = std::move(made);
  }
  // Replaces the point the curve's contexts verify with: they hold this
  // key's data, not a copy (tests/unit/pki/public_key_test.cc checks that a
  // signature verifies only under its own key, whatever key came before).
  if (parts.key_bits.empty() ||
      EVP_PKEY_set1_encoded_public_key(curve->key.get(), parts.key_bits.data(),
                                       parts.key_bits.size()) != 1) {
    return notOnCurve();
  }
  curve_ = curve.get();
  const CurveInfo& c = kCurves[index];
  return PublicKeyInfo{.type = c.type, .rsa = false, .description = c.description};
}

Result<PublicKeyInfo> SignatureVerifier::setRsaKey(const SpkiParts& parts) {
  // publicKeyFromSpki's checks, its size rule, and a usable public exponent.
  MESHID_ASSIGN_OR_RETURN(RsaNumbers numbers, rsaNumbers(parts.parameters, parts.key_bits));
  if (!rsa_)
    rsa_ = std::make_unique<Rsa>();
  Rsa& k = *rsa_;
  if (!k.n || !k.e || !k.s || !k.m || !k.ctx ||
      !BN_bin2bn(numbers.n.data(), static_cast<int>(numbers.n.size()), k.n.get()) ||
      !BN_bin2bn(numbers.e.data(), static_cast<int>(numbers.e.size()), k.e.get())) {
    return opensslError(Code::kInternal, "cannot set up signature verification");
  }
  k.bits = BN_num_bits(k.n.get());
  MESHID_RETURN_IF_ERROR(checkRsaBits(k.bits));
  if (!BN_is_odd(k.n.get()) || !BN_is_odd(k.e.get()) || BN_is_one(k.e.get()) ||
      static_cast<size_t>(BN_num_bytes(k.e.get())) > kMaxRsaExponentBytes) {
    return Error::invalidArgument(
        "RSA public key is not usable: the modulus and exponent must be odd, the exponent "
        "between 3 and 2^32");
  }
  rsa_set_ = true;
  return PublicKeyInfo{
      .type = rsaKeyType(k.bits), .rsa = true, .description = fmt::format("RSA {}", k.bits)};
}

Result<void> SignatureVerifier::verifyRsa(int digest_bits, Bytes data, Bytes signature) {
  Rsa& k = *rsa_;
  const auto size = static_cast<size_t>(BN_num_bytes(k.n.get()));
  auto invalid = [] {
    drainOpensslErrors();
    return Error::invalidArgument("signature does not verify");
  };
  // RFC 8017 §8.2.2: the signature has the modulus's length and is below it.
  if (signature.size() != size)
    return invalid();
  if (!BN_bin2bn(signature.data(), static_cast<int>(signature.size()), k.s.get()) ||
      BN_ucmp(k.s.get(), k.n.get()) >= 0) {
    return invalid();
  }
  if (!BN_mod_exp_mont(k.m.get(), k.s.get(), k.e.get(), k.n.get(), k.ctx.get(), nullptr))
    return opensslError(Code::kInternal, "cannot verify the RSA signature");
  std::string em(size, '\0');
  if (BN_bn2binpad(k.m.get(), reinterpret_cast<unsigned char*>(em.data()),
                   static_cast<int>(size)) != static_cast<int>(size)) {
    return invalid();
  }
  // EMSA-PKCS1-v1_5: 00 01 FF..FF 00 DigestInfo, at least 8 bytes of FF.
  const EVP_MD* md = fetchedDigest(digest_bits);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &digest_len, md, nullptr) != 1)
    return opensslError(Code::kInternal, "cannot digest the signed data");
  std::string_view prefix = digestInfoPrefix(digest_bits);
  size_t t_len = prefix.size() + digest_len;
  if (size < t_len + 11)
    return invalid();
  std::string expected(size, '\xff');
  expected[0] = '\0';
  expected[1] = '\x01';
  expected[size - t_len - 1] = '\0';
  expected.replace(size - t_len, prefix.size(), prefix);
  expected.replace(size - digest_len, digest_len, reinterpret_cast<const char*>(digest),
                   digest_len);
  if (em != expected)
    return invalid();
  return okResult();
}

Result<void> SignatureVerifier::verify(Bytes sig_alg_oid, Bytes data, Bytes signature) {
  if (rsa_set_) {
    MESHID_ASSIGN_OR_RETURN(SigAlg alg, sigAlgForKey(sig_alg_oid, EVP_PKEY_RSA));
    return verifyRsa(alg.digest_bits, data, signature);
  }
  if (curve_ == nullptr) {
    if (!other_key_)
      return Error::invalidArgument("no key to verify the signature with");
    return verifySignature(other_key_.get(), sig_alg_oid, data, signature);
  }
  MESHID_ASSIGN_OR_RETURN(SigAlg alg, sigAlgForKey(sig_alg_oid, EVP_PKEY_EC));
  const EVP_MD* md = fetchedDigest(alg.digest_bits);
  EvpPkeyCtxPtr& ctx = curve_->contexts[alg.digest_bits == 512   ? 2
                                        : alg.digest_bits == 384 ? 1
                                                                 : 0];
  if (!ctx) {
    EvpPkeyCtxPtr made(EVP_PKEY_CTX_new_from_pkey(nullptr, curve_->key.get(), nullptr));
    if (!made || EVP_PKEY_verify_init(made.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(made.get(), md) != 1) {
      return opensslError(Code::kInternal, "cannot set up signature verification");
    }
    ctx = std::move(made);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &digest_len, md, nullptr) != 1)
    return opensslError(Code::kInternal, "cannot digest the signed data");
  if (EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest, digest_len) != 1)
    return opensslError(Code::kInvalidArgument, "signature does not verify");
  return okResult();
}

}  // namespace meshid::pki
