// The CA's admin HTTP port: /metrics, /healthz, /readyz, /debug/ca.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/result.h"

namespace httplib {
class Server;
}

namespace meshid::ca {

struct AdminHandlers {
  std::function<std::string()> metrics;     // Prometheus text
  std::function<bool(std::string*)> ready;  // false + why when not ready
  std::function<std::string()> debug_json;  // /debug/ca
};

class AdminHttp {
 public:
  // listen is "host:port"; port 0 picks a free one.
  static Result<std::unique_ptr<AdminHttp>> start(const std::string& listen,
                                                  AdminHandlers handlers);
  ~AdminHttp();
  int port() const { return port_; }
  void stop();

 private:
  AdminHttp() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "host:port" ("[::1]:80" too); port 0 allowed.
Result<std::pair<std::string, int>> splitHostPort(const std::string& listen);

}  // namespace meshid::ca
