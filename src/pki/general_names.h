// subjectAltName contents, shared by certificates and CSRs.
#pragma once

#include <string>
#include <vector>

#include "pki/ossl.h"

namespace meshid::pki {

struct SubjectAltNames {
  std::vector<std::string> uri;
  std::vector<std::string> dns;
  std::vector<std::string> ip;
  std::vector<std::string> email;
  int other = 0;  // directoryName, otherName, ...: counted, never interpreted
};

SubjectAltNames collectSubjectAltNames(const GENERAL_NAMES* names);

}  // namespace meshid::pki
