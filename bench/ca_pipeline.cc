// Per-step cost of the CA's signing hot path on one thread, beside the two
// signature operations the issuance bound counts (bench/ca_issuance.sh): is
// the time spent where it has to be? Run: build/bench/meshid_ca_pipeline
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <string>
#include <vector>

#include "pki/csr.h"
#include "pki/issuance.h"
#include "pki/key.h"
#include "pki/memory_key_signer.h"
#include "pki/public_key.h"

namespace {

using namespace meshid;
using namespace meshid::pki;

struct Fixture {
  std::unique_ptr<MemoryKeySigner> ca_signer;
  X509Ptr ca_cert;
  std::unique_ptr<SvidIssuer> issuer;
  std::vector<std::string> csrs;
  std::vector<std::string> rsa_csrs;
  SpiffeId id = *SpiffeId::parse("spiffe://example.org/ns/bench/sa/load");

  Fixture() {
    ca_signer = std::move(*MemoryKeySigner::create(std::move(*generateKey(KeyType::kEcP256))));
    CaCertificateRequest root{.public_key = ca_signer->publicKey(),
                              .trust_domain = *TrustDomain::parse("example.org"),
                              .common_name = "bench root",
                              .lifetime = Seconds(86400),
                              .now = std::chrono::system_clock::now()};
    ca_cert = std::move(*issueRootCertificate(root, *ca_signer));
    issuer = std::move(*SvidIssuer::create(ca_cert.get(), *ca_signer));
    for (int i = 0; i < 256; ++i) {
      auto key = generateKey(KeyType::kEcP256);
      csrs.push_back(csrToPem(buildCsr(key->get(), id)->get()));
    }
    for (int i = 0; i < 8; ++i) {
      auto key = generateKey(KeyType::kRsa2048);
      rsa_csrs.push_back(csrToPem(buildCsr(key->get(), id)->get()));
    }
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// The bound's two operations with everything loaded: verify a CSR-sized
// message's signature, sign a certificate-sized one.
// The bound's two operations, as `openssl speed` does them: SHA-256 over the
// data and one signature with a fresh context, and its check.
std::string signSha256(EVP_PKEY* key, const std::string& data) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
  size_t len = 0;
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                 data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(len);
  return sig;
}
int verifySha256(EVP_PKEY* key, const std::string& sig, const std::string& data) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

void BM_BoundVerifyPlusSign(benchmark::State& state) {
  auto client = generateKey(KeyType::kEcP256);
  std::string data(300, 'x');
  std::string sig = signSha256(client->get(), data);
  for (auto _ : state) {
    benchmark::DoNotOptimize(verifySha256(client->get(), sig, data));
    benchmark::DoNotOptimize(signSha256(client->get(), data));
  }
}
BENCHMARK(BM_BoundVerifyPlusSign);

// Parses the fixture's CSRs in turn: P-256 ones, or RSA-2048 ones; with a
// verifier kept across calls, as the CA's signing threads do.
void parseEach(benchmark::State& state, const std::vector<std::string>& csrs,
               SignatureVerifier* verifier = nullptr) {
  size_t i = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(parseCsr(csrs[i++ % csrs.size()], verifier));
}
void BM_ParseCsr(benchmark::State& state) {
  parseEach(state, fixture().csrs);
}
BENCHMARK(BM_ParseCsr);
void BM_ParseCsrReusedVerifier(benchmark::State& state) {
  SignatureVerifier verifier;
  parseEach(state, fixture().csrs, &verifier);
}
BENCHMARK(BM_ParseCsrReusedVerifier);
// The verify alone, key and context made once: what parsing a CSR cannot beat.
void BM_VerifyOnly(benchmark::State& state) {
  auto key = generateKey(KeyType::kEcP256);
  std::string data(200, 'x');
  std::string sig = signSha256(key->get(), data);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr));
  EVP_PKEY_verify_init(ctx.get());
  EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256());
  unsigned char digest[32];
  unsigned int digest_len = 0;
  EVP_Digest(data.data(), data.size(), digest, &digest_len, EVP_sha256(), nullptr);
  for (auto _ : state) {
    benchmark::DoNotOptimize(EVP_PKEY_verify(ctx.get(),
                                             reinterpret_cast<const unsigned char*>(sig.data()),
                                             sig.size(), digest, digest_len));
  }
}
BENCHMARK(BM_VerifyOnly);
void BM_ParseRsaCsr(benchmark::State& state) {
  parseEach(state, fixture().rsa_csrs);
}
BENCHMARK(BM_ParseRsaCsr);

// RSA-2048 signature verification alone (the RSA bound's verify).
void BM_RsaVerify(benchmark::State& state) {
  auto key = generateKey(KeyType::kRsa2048);
  std::string data(300, 'x');
  std::string sig = signSha256(key->get(), data);
  for (auto _ : state)
    benchmark::DoNotOptimize(verifySha256(key->get(), sig, data));
}
BENCHMARK(BM_RsaVerify);

// The issuer's request for a parsed CSR, as the CA makes it.
SvidRequest requestFor(const ParsedCsr& csr, const SpiffeId& id, SerialRandom& random) {
  return SvidRequest{.spki_der = csr.spki_der,
                     .spiffe_id = id,
                     .lifetime = Seconds(3600),
                     .now = std::chrono::system_clock::now(),
                     .serial_random = &random};
}

// A leaf's serial number alone (16 bytes: time, then 10 random bytes).
void BM_LeafSerial(benchmark::State& state) {
  auto now = std::chrono::system_clock::now();
  for (auto _ : state)
    benchmark::DoNotOptimize(leafSerial(now));
}
BENCHMARK(BM_LeafSerial);
// ... its random bytes taken from a SerialRandom, as the CA's signing threads do.
void BM_LeafSerialBuffered(benchmark::State& state) {
  auto now = std::chrono::system_clock::now();
  SerialRandom random;
  for (auto _ : state)
    benchmark::DoNotOptimize(leafSerial(now, random));
}
BENCHMARK(BM_LeafSerialBuffered);

void BM_Issue(benchmark::State& state) {
  auto& f = fixture();
  auto csr = parseCsr(f.csrs[0]);
  SerialRandom random;
  for (auto _ : state)
    benchmark::DoNotOptimize(f.issuer->issue(requestFor(*csr, f.id, random)));
}
BENCHMARK(BM_Issue);

void BM_ParseAndIssue(benchmark::State& state) {
  auto& f = fixture();
  SignatureVerifier verifier;
  SerialRandom random;
  size_t i = 0;
  for (auto _ : state) {
    auto csr = parseCsr(f.csrs[i++ % f.csrs.size()], &verifier);
    benchmark::DoNotOptimize(f.issuer->issue(requestFor(*csr, f.id, random)));
  }
}
BENCHMARK(BM_ParseAndIssue);

}  // namespace

BENCHMARK_MAIN();
