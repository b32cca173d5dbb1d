// Printing certificates and errors, for people (default) and machines (--json).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <ostream>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "pki/certificate.h"

namespace meshid::cli {

nlohmann::json certificateJson(const pki::CertificateInfo& info, SystemTime now);

// A block of aligned "field  value" lines under a heading.
void printCertificate(std::ostream& out, const pki::CertificateInfo& info, SystemTime now,
                      std::string_view heading);

// "leaf", "intermediate CA", "root CA".
std::string_view certificateRole(const pki::CertificateInfo& info);

// "expires in 23h59m" / "expired 5m ago" / "not valid for another 3m".
std::string validityRemark(const pki::CertificateInfo& info, SystemTime now);

// Prints "error: <message>" to err (or {"error": ...} to out with json) and
// returns kExitFailure.
int reportError(std::ostream& out, std::ostream& err, const Error& error, bool json);

}  // namespace meshid::cli
