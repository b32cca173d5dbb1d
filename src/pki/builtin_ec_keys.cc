// The one translation unit that uses OpenSSL's ENGINE API (deprecated in
// 3.0, still built into Debian's 3.0): see builtin_ec_keys.h for why.
#undef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 10101
#define OPENSSL_SUPPRESS_DEPRECATED

#include "pki/builtin_ec_keys.h"

#include <openssl/engine.h>
#include <openssl/evp.h>

#include <mutex>

#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

// The ENGINE's only function: for the EC key type, OpenSSL's built-in
// method (EVP_PKEY_meth_find does not consult ENGINEs, so no recursion).
int ecMethods(ENGINE*, EVP_PKEY_METHOD** method, const int** nids, int nid) {
  static const int kNids[] = {EVP_PKEY_EC};
  if (method == nullptr) {
    *nids = kNids;
    return 1;
  }
  *method =
      nid == EVP_PKEY_EC ? const_cast<EVP_PKEY_METHOD*>(EVP_PKEY_meth_find(EVP_PKEY_EC)) : nullptr;
  return *method != nullptr;
}

}  // namespace

Result<void> useBuiltinEcKeysForCertificates() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    ENGINE* e = ENGINE_new();
    ok = e != nullptr && ENGINE_set_id(e, "meshid-builtin-ec") == 1 &&
         ENGINE_set_name(e, "OpenSSL's built-in EC key methods, without decoders") == 1 &&
         ENGINE_set_pkey_meths(e, ecMethods) == 1 && ENGINE_set_default_pkey_meths(e) == 1;
    ENGINE_free(e);  // the ENGINE table keeps its own reference
  });
  if (!ok)
    return opensslError(Code::kInternal, "cannot register the built-in EC key methods");
  return okResult();
}

bool builtinEcKeysInUse() {
  ENGINE* e = ENGINE_get_pkey_meth_engine(EVP_PKEY_EC);
  if (e == nullptr)
    return false;
  ENGINE_finish(e);
  return true;
}

}  // namespace meshid::pki
