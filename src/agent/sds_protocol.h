// The rules of one SDS stream (PROTOCOLS.md §2), as a pure state machine the
// gRPC reactor drives, so each rule is unit-tested without a socket:
//   - an empty response_nonce (new stream, or reconnect even with a
//     version_info) gets the current state at once;
//   - the last nonce sent: an ACK or a NACK, neither answered (unless the
//     resource names changed: answered at once);
//   - an older nonce: stale, ignored;
//   - nothing exists yet: hold, answer nothing;
//   - a change is pushed unasked, but never the content last sent (so a
//     NACKed response is not resent).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace meshid::agent {

struct SdsRequest {
  std::string version_info;
  std::vector<std::string> resource_names;
  std::string response_nonce;
  bool nack = false;  // error_detail present
};

struct SdsSend {
  std::vector<std::string> names;  // the requested names that exist now, in request order
  std::string version_info;        // one content version for the whole response
  std::string nonce;
};

class SdsStreamState {
 public:
  // The content version of a resource now, or nullopt while it does not exist.
  using Lookup = std::function<std::optional<std::string>(const std::string& name)>;

  std::optional<SdsSend> onRequest(const SdsRequest& request, const Lookup& lookup);
  std::optional<SdsSend> onChange(const Lookup& lookup);

  const std::vector<std::string>& names() const { return names_; }
  const std::string& ackedVersion() const { return acked_version_; }
  int acks() const { return acks_; }
  int nacks() const { return nacks_; }
  int staleIgnored() const { return stale_; }

 private:
  std::optional<SdsSend> current(const Lookup& lookup);

  bool subscribed_ = false;
  std::vector<std::string> names_;
  uint64_t nonce_counter_ = 0;
  std::string last_nonce_;
  std::string last_sent_version_;
  std::string acked_version_;
  int acks_ = 0;
  int nacks_ = 0;
  int stale_ = 0;
};

}  // namespace meshid::agent
