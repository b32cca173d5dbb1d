#include "pki/spiffe_id.h"

#include <fmt/format.h>

namespace meshid::pki {
namespace {

constexpr std::string_view kScheme = "spiffe://";

bool isTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool isPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

// A printable, bounded rendering of hostile input for error messages.
std::string quoted(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (s.size() > 80) {
    out += "...";
  }
  return "\"" + out + "\"";
}

Result<void> validateTrustDomain(std::string_view td, std::string_view whole) {
  if (td.empty()) {
    return Error::invalidArgument(
        fmt::format("spiffe id {} has an empty trust domain", quoted(whole)));
  }
  if (td.size() > kMaxTrustDomainBytes) {
    return Error::invalidArgument(
        fmt::format("trust domain is longer than {} bytes", kMaxTrustDomainBytes));
  }
  for (char c : td) {
    if (isTrustDomainChar(c)) {
      continue;
    }
    if (c >= 'A' && c <= 'Z') {
      return Error::invalidArgument(
          fmt::format("trust domain in {} must be lowercase", quoted(whole)));
    }
    if (c == ':') {
      return Error::invalidArgument(
          fmt::format("trust domain in {} must not have a port", quoted(whole)));
    }
    if (c == '@') {
      return Error::invalidArgument(
          fmt::format("trust domain in {} must not have user info", quoted(whole)));
    }
    return Error::invalidArgument(fmt::format(
        "trust domain in {} has a character other than lowercase letters, digits, '.', '-' and "
        "'_'",
        quoted(whole)));
  }
  return okResult();
}

Result<void> validatePath(std::string_view path, std::string_view whole) {
  // path is "" or starts with '/'
  if (path.empty()) {
    return okResult();
  }
  if (path.back() == '/') {
    return Error::invalidArgument(
        fmt::format("spiffe id {} must not end with a slash", quoted(whole)));
  }
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    std::string_view seg =
        path.substr(pos, (next == std::string_view::npos ? path.size() : next) - pos);
    if (seg.empty()) {
      return Error::invalidArgument(
          fmt::format("spiffe id {} has an empty path segment", quoted(whole)));
    }
    if (seg == "." || seg == "..") {
      return Error::invalidArgument(
          fmt::format("spiffe id {} has a '.' or '..' path segment", quoted(whole)));
    }
    for (char c : seg) {
      if (isPathChar(c)) {
        continue;
      }
      if (c == '?') {
        return Error::invalidArgument(
            fmt::format("spiffe id {} must not have a query", quoted(whole)));
      }
      if (c == '#') {
        return Error::invalidArgument(
            fmt::format("spiffe id {} must not have a fragment", quoted(whole)));
      }
      if (c == '%') {
        return Error::invalidArgument(
            fmt::format("spiffe id {} must not be percent-encoded", quoted(whole)));
      }
      return Error::invalidArgument(fmt::format(
          "spiffe id {} has a path character other than letters, digits, '.', '-' and '_'",
          quoted(whole)));
    }
    if (next == std::string_view::npos) {
      break;
    }
    pos = next + 1;
  }
  return okResult();
}

}  // namespace

Result<TrustDomain> TrustDomain::parse(std::string_view text) {
  std::string_view td = text;
  if (td.starts_with(kScheme)) {
    td.remove_prefix(kScheme.size());
  }
  if (td.find('/') != std::string_view::npos) {
    return Error::invalidArgument(
        fmt::format("trust domain {} must not have a path", quoted(text)));
  }
  MESHID_RETURN_IF_ERROR(validateTrustDomain(td, text));
  return TrustDomain(std::string(td));
}

Result<SpiffeId> SpiffeId::parse(std::string_view uri) {
  if (uri.size() > kMaxSpiffeIdBytes) {
    return Error::invalidArgument(
        fmt::format("spiffe id is longer than {} bytes", kMaxSpiffeIdBytes));
  }
  if (!uri.starts_with(kScheme)) {
    return Error::invalidArgument(
        fmt::format("spiffe id {} must start with spiffe://", quoted(uri)));
  }
  std::string_view rest = uri.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view td = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  // '?' and '#' may sit in the trust-domain part too ("spiffe://td?x"): name them.
  for (char c : td) {
    if (c == '?') {
      return Error::invalidArgument(fmt::format("spiffe id {} must not have a query", quoted(uri)));
    }
    if (c == '#') {
      return Error::invalidArgument(
          fmt::format("spiffe id {} must not have a fragment", quoted(uri)));
    }
  }
  MESHID_RETURN_IF_ERROR(validateTrustDomain(td, uri));
  MESHID_RETURN_IF_ERROR(validatePath(path, uri));
  return SpiffeId(TrustDomain(std::string(td)), std::string(uri));
}

Result<SpiffeId> SpiffeId::forServiceAccount(const TrustDomain& td, std::string_view ns,
                                             std::string_view sa) {
  if (ns.empty() || sa.empty()) {
    return Error::invalidArgument("namespace and service account must not be empty");
  }
  // A '/' would make a part several path segments: another identity's shape.
  if (ns.find('/') != std::string_view::npos || sa.find('/') != std::string_view::npos) {
    return Error::invalidArgument("namespace and service account must not contain '/'");
  }
  return parse(fmt::format("spiffe://{}/ns/{}/sa/{}", td.name(), ns, sa));
}

SpiffeId SpiffeId::forTrustDomain(const TrustDomain& td) {
  return SpiffeId(td, td.idString());
}

std::string_view SpiffeId::path() const {
  return std::string_view(uri_).substr(kScheme.size() + td_.name().size());
}

std::optional<std::pair<std::string, std::string>> SpiffeId::serviceAccount() const {
  std::string_view p = path();
  if (!p.starts_with("/ns/")) {
    return std::nullopt;
  }
  p.remove_prefix(4);
  size_t sa = p.find("/sa/");
  if (sa == std::string_view::npos || sa == 0) {
    return std::nullopt;
  }
  std::string_view ns = p.substr(0, sa), name = p.substr(sa + 4);
  if (name.empty() || name.find('/') != std::string_view::npos) {
    return std::nullopt;
  }
  return std::make_pair(std::string(ns), std::string(name));
}

}  // namespace meshid::pki
