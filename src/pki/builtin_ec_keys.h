// Certificate public keys without OpenSSL 3.0's decoder framework.
//
// OpenSSL 3.0 decodes the key of every certificate it parses through
// OSSL_DECODER, whose set-up costs 100-150 µs per key on this machine kind
// (TOOLCHAIN.md §12): with the client's leaf, its intermediate and, for a
// TLS 1.2 ticket, the session's copy of the leaf, that is the larger part of
// a full mTLS handshake's certificate cost. OpenSSL 3.0 still carries its
// 1.1 EC key code and uses it for certificate keys when an ENGINE claims the
// EC key type. useBuiltinEcKeysForCertificates() registers such an ENGINE,
// which hands back OpenSSL's own built-in EC method: the same point checks
// and curve arithmetic, no decoder (measured: d2i_X509 of a P-256
// certificate 134-197 µs -> 48 µs).
//
// It is process-wide (OpenSSL's ENGINE table), so only the proxy calls it,
// once at startup, before any thread handshakes. EC keys the process
// generates take the built-in code too: for the proxy those are TLS key
// shares on P-256/P-384/P-521 (X25519 is another key type), which work the
// same (tests/unit_engine). Keys read from PEM files stay provider keys;
// RSA and Ed25519 keys are not affected. A process that generates EC keys
// by OpenSSL 3 names ("P-256" rather than "prime256v1"), as the CA and the
// agent do, must not call it: the built-in code does not know those names.
#pragma once

#include "common/result.h"

namespace meshid::pki {

Result<void> useBuiltinEcKeysForCertificates();

// Whether an EC key parsed from a certificate now would bypass the decoder.
bool builtinEcKeysInUse();

}  // namespace meshid::pki
