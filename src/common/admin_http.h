// A small HTTP server for admin ports (/metrics, /healthz, ...): GET routes,
// and POST routes for the few calls that change something, on its own thread, bound without
// SO_REUSEPORT so a second process cannot silently share the port.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/result.h"

namespace httplib {
class Server;
}

namespace meshid {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

struct HttpRoute {
  std::string path;
  std::function<HttpReply()> handler;  // GET
  // POST, with the query and form parameters. A request carrying an Origin
  // header (a browser page posting cross-site) is refused before it.
  std::function<HttpReply(const std::map<std::string, std::string>&)> post;
};

class AdminHttp {
 public:
  // listen is "host:port"; port 0 picks a free one.
  static Result<std::unique_ptr<AdminHttp>> start(const std::string& listen,
                                                  std::vector<HttpRoute> routes);
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

}  // namespace meshid
