#include "pki/public_key.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "pki/oids.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using testing::newEcKey;
using testing::newKey;
using testing::newRsaKey;

std::string spkiOf(const EVP_PKEY* key) {
  unsigned char* buf = nullptr;
  int len = i2d_PUBKEY(const_cast<EVP_PKEY*>(key), &buf);
  std::string out(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return out;
}

std::string sign(const EVP_PKEY* key, const std::string& data, const EVP_MD* md) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, const_cast<EVP_PKEY*>(key));
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                 data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(len);
  return sig;
}

struct Signed {
  EvpPkeyPtr key;
  std::string spki, data, sig;
};

Signed signedBy(EvpPkeyPtr key, int i, const EVP_MD* md = EVP_sha256()) {
  Signed s{std::move(key), "", "request " + std::to_string(i), ""};
  s.spki = spkiOf(s.key.get());
  s.sig = sign(s.key.get(), s.data, md);
  return s;
}

Result<void> verifyWith(SignatureVerifier& v, const Signed& key_of, const Signed& sig_of,
                        std::string_view sig_oid = oid::kEcdsaSha256) {
  auto info = v.setKey(der::asBytes(key_of.spki));
  if (!info.ok())
    return info.error();
  return v.verify(der::asBytes(sig_oid), der::asBytes(sig_of.data), der::asBytes(sig_of.sig));
}

// The verifier keeps one key per curve and changes its point for each
// request; the contexts made on it must see the new point every time.
TEST(SignatureVerifier, EachSignatureVerifiesOnlyUnderItsOwnKeyWhateverCameBefore) {
  std::vector<Signed> all;
  for (int i = 0; i < 12; ++i)
    all.push_back(signedBy(newKey(KeyType::kEcP256), i));
  SignatureVerifier v;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(verifyWith(v, all[i], all[i]).ok()) << "key " << i;
    // Straight after a key that verified, another key's signature fails...
    const Signed& next = all[(i + 1) % all.size()];
    auto wrong = verifyWith(v, all[i], next);
    ASSERT_FALSE(wrong.ok()) << "key " << i << " took the next key's signature";
    EXPECT_EQ(wrong.error().code, Code::kInvalidArgument);
    EXPECT_NE(wrong.error().message.find("does not verify"), std::string::npos);
    // ...and the same signature passes under its own key right after.
    EXPECT_TRUE(verifyWith(v, next, next).ok()) << "key " << i + 1;
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "a refusal left errors on OpenSSL's queue";
}

TEST(SignatureVerifier, CurvesAndDigestsKeepTheirOwnState) {
  Signed p256 = signedBy(newKey(KeyType::kEcP256), 1);
  Signed p384 = signedBy(newKey(KeyType::kEcP384), 2, EVP_sha384());
  Signed p256_sha512 = signedBy(newKey(KeyType::kEcP256), 3, EVP_sha512());
  SignatureVerifier v;
  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(verifyWith(v, p256, p256).ok());
    EXPECT_TRUE(verifyWith(v, p384, p384, oid::kEcdsaSha384).ok());
    EXPECT_TRUE(verifyWith(v, p256_sha512, p256_sha512, oid::kEcdsaSha512).ok());
    // The signature names the digest: a SHA-512 signature called SHA-256 fails.
    EXPECT_FALSE(verifyWith(v, p256_sha512, p256_sha512, oid::kEcdsaSha256).ok());
  }
}

TEST(SignatureVerifier, DescribesTheKeyAsPolicyNeedsIt) {
  SignatureVerifier v;
  auto p256 = v.setKey(der::asBytes(spkiOf(newKey(KeyType::kEcP256).get())));
  ASSERT_TRUE(p256.ok());
  EXPECT_EQ(p256->type, KeyType::kEcP256);
  EXPECT_EQ(p256->description, "ECDSA P-256");
  EXPECT_FALSE(p256->rsa);
  auto p521 = v.setKey(der::asBytes(spkiOf(newEcKey("P-521").get())));
  ASSERT_TRUE(p521.ok());
  EXPECT_FALSE(p521->type.has_value()) << "P-521 is accepted but no CA key type";
  EXPECT_EQ(p521->description, "ECDSA P-521");
  auto rsa = v.setKey(der::asBytes(spkiOf(newRsaKey(2048).get())));
  ASSERT_TRUE(rsa.ok());
  EXPECT_EQ(rsa->type, KeyType::kRsa2048);
  EXPECT_TRUE(rsa->rsa);
  EXPECT_EQ(rsa->description, "RSA 2048");
}

TEST(SignatureVerifier, RefusesWhatPublicKeyFromSpkiRefuses) {
  SignatureVerifier v;
  Signed good = signedBy(newKey(KeyType::kEcP256), 1);
  // A point off the curve: the last byte of y changed.
  std::string off = good.spki;
  off.back() = static_cast<char>(off.back() ^ 1);
  auto r = v.setKey(der::asBytes(off));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not a point on its curve"), std::string::npos);
  // ...and nothing is left set to verify with.
  EXPECT_FALSE(
      v.verify(der::asBytes(oid::kEcdsaSha256), der::asBytes(good.data), der::asBytes(good.sig))
          .ok());
  auto k1 = v.setKey(der::asBytes(spkiOf(newEcKey("secp256k1").get())));
  ASSERT_FALSE(k1.ok());
  EXPECT_NE(k1.error().message.find("is not accepted"), std::string::npos);
  auto weak = v.setKey(der::asBytes(spkiOf(newRsaKey(1024).get())));
  ASSERT_FALSE(weak.ok());
  EXPECT_NE(weak.error().message.find("too weak"), std::string::npos);
  // An RSA signature algorithm on an EC key.
  ASSERT_TRUE(v.setKey(der::asBytes(good.spki)).ok());
  auto misfit =
      v.verify(der::asBytes(oid::kRsaSha256), der::asBytes(good.data), der::asBytes(good.sig));
  ASSERT_FALSE(misfit.ok());
  EXPECT_NE(misfit.error().message.find("does not fit"), std::string::npos);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// RSA PKCS#1 v1.5 is checked on bignums, not by OpenSSL's RSA code: it must
// accept exactly what OpenSSL's verify accepts, for every digest, and refuse
// every encoding but the one (RFC 8017 §8.2.2).
TEST(SignatureVerifier, RsaAgreesWithOpenSsl) {
  SignatureVerifier v;
  EvpPkeyPtr key = newRsaKey(2048);
  const struct {
    const EVP_MD* md;
    std::string_view oid;
  } digests[] = {{EVP_sha256(), oid::kRsaSha256},
                 {EVP_sha384(), oid::kRsaSha384},
                 {EVP_sha512(), oid::kRsaSha512}};
  Signed other = signedBy(newRsaKey(2048), 99);
  for (const auto& d : digests) {
    Signed s = signedBy(shareKey(key.get()), 1, d.md);
    auto info = v.setKey(der::asBytes(s.spki));
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->type, KeyType::kRsa2048);
    for (size_t bit = 0; bit <= s.sig.size() * 8; bit += 97) {
      std::string sig = s.sig;
      if (bit < sig.size() * 8)  // the last round: the signature untouched
        sig[bit / 8] = static_cast<char>(sig[bit / 8] ^ (1 << (bit % 8)));
      bool ours = v.verify(der::asBytes(d.oid), der::asBytes(s.data), der::asBytes(sig)).ok();
      bool openssl =
          verifySignature(key.get(), der::asBytes(d.oid), der::asBytes(s.data), der::asBytes(sig))
              .ok();
      EXPECT_EQ(ours, openssl) << "bit " << bit;
      EXPECT_EQ(ours, bit >= s.sig.size() * 8) << "bit " << bit;
    }
    // Another key's signature, a signature one byte short, the data changed.
    EXPECT_FALSE(
        v.verify(der::asBytes(d.oid), der::asBytes(other.data), der::asBytes(other.sig)).ok());
    EXPECT_FALSE(v.verify(der::asBytes(d.oid), der::asBytes(s.data),
                          der::asBytes(std::string_view(s.sig).substr(1)))
                     .ok());
    EXPECT_FALSE(
        v.verify(der::asBytes(d.oid), der::asBytes(s.data + "!"), der::asBytes(s.sig)).ok());
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// Raw RSA with the private key: whatever block `em` is, as a signature.
std::string rawSign(const EVP_PKEY* key, const std::string& em) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(key), nullptr));
  EVP_PKEY_sign_init(ctx.get());
  EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_NO_PADDING);
  size_t len = 0;
  EVP_PKEY_sign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(em.data()),
                em.size());
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                          reinterpret_cast<const unsigned char*>(em.data()), em.size()),
            1);
  return sig;
}

TEST(SignatureVerifier, RsaRefusesEveryEncodingButTheOne) {
  EvpPkeyPtr key = newRsaKey(2048);
  const std::string data = "the CSR's signed part";
  unsigned char h[32];
  unsigned int h_len = 0;
  EVP_Digest(data.data(), data.size(), h, &h_len, EVP_sha256(), nullptr);
  const std::string hash(reinterpret_cast<char*>(h), h_len);
  const std::string info_null(
      "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20", 19);
  const std::string info_no_null(
      "\x30\x2f\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x04\x20", 17);
  auto block = [&](char type, const std::string& t, size_t garbage = 0) {
    std::string em = std::string("\x00", 1) + type;
    em += std::string(256 - 3 - t.size() - garbage, '\xff');
    em += std::string("\x00", 1) + t + std::string(garbage, '\x07');
    return em;
  };
  SignatureVerifier v;
  ASSERT_TRUE(v.setKey(der::asBytes(spkiOf(key.get()))).ok());
  auto verifies = [&](const std::string& em) {
    std::string sig = rawSign(key.get(), em);
    return v.verify(der::asBytes(oid::kRsaSha256), der::asBytes(data), der::asBytes(sig)).ok();
  };
  EXPECT_TRUE(verifies(block('\x01', info_null + hash))) << "the one encoding";
  EXPECT_FALSE(verifies(block('\x02', info_null + hash))) << "block type 2";
  EXPECT_FALSE(verifies(block('\x01', info_no_null + hash))) << "DigestInfo without NULL";
  // Garbage after the hash, where a lax parser stops reading (Bleichenbacher 2006).
  EXPECT_FALSE(verifies(block('\x01', info_null + hash, 8))) << "trailing garbage";
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// An exponent of 1 makes every block its own signature; even ones are not RSA.
TEST(SignatureVerifier, RsaRefusesUnusableExponents) {
  EvpPkeyPtr key = newRsaKey(2048);
  std::string spki = spkiOf(key.get());
  // The SPKI ends with INTEGER e = 65537 (02 03 01 00 01).
  ASSERT_EQ(spki.substr(spki.size() - 5), std::string("\x02\x03\x01\x00\x01", 5));
  SignatureVerifier v;
  for (std::string e : {std::string("\x01\x00\x00", 3), std::string("\x00\x00\x01", 3),
                        std::string("\x01\x00\x02", 3)}) {
    std::string bad = spki;
    bad.replace(bad.size() - 3, 3, e);
    auto r = v.setKey(der::asBytes(bad));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("not usable"), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(v.setKey(der::asBytes(spki)).ok());
}

}  // namespace
}  // namespace meshid::pki
