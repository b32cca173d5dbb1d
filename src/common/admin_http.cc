#include "common/admin_http.h"

#include <fmt/format.h>
#include <httplib.h>

namespace meshid {

Result<std::pair<std::string, int>> splitHostPort(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return Error::invalidArgument(fmt::format("listen address \"{}\" must be HOST:PORT", listen));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : listen.substr(colon + 1)) {
    if (c < '0' || c > '9' || (port = port * 10 + (c - '0')) > 65535) {
      return Error::invalidArgument(fmt::format("listen address \"{}\" has a bad port", listen));
    }
  }
  return std::make_pair(host, port);
}

Result<std::unique_ptr<AdminHttp>> AdminHttp::start(const std::string& listen,
                                                    std::vector<HttpRoute> routes) {
  MESHID_ASSIGN_OR_RETURN(auto hp, splitHostPort(listen));
  std::unique_ptr<AdminHttp> a(new AdminHttp());
  a->server_ = std::make_unique<httplib::Server>();
  auto& srv = *a->server_;
  // httplib's default also sets SO_REUSEPORT, which lets a second process
  // bind the same admin port and silently take half the scrapes and probes:
  // keep only SO_REUSEADDR (a quick restart past TIME_WAIT).
  srv.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  for (auto& route : routes) {
    if (route.handler) {
      srv.Get(route.path,
              [h = std::move(route.handler)](const httplib::Request&, httplib::Response& res) {
                HttpReply reply = h();
                res.status = reply.status;
                res.set_content(reply.body, reply.content_type);
              });
    }
    if (route.post) {
      srv.Post(route.path,
               [h = std::move(route.post)](const httplib::Request& req, httplib::Response& res) {
                 if (req.has_header("Origin")) {
                   res.status = 403;
                   res.set_content("admin calls are not taken from web pages\n", "text/plain");
                   return;
                 }
                 std::map<std::string, std::string> params;
                 for (const auto& [k, v] : req.params)
                   params.emplace(k, v);
                 HttpReply reply = h(params);
                 res.status = reply.status;
                 res.set_content(reply.body, reply.content_type);
               });
    }
  }
  int port = hp.second == 0 ? srv.bind_to_any_port(hp.first)
                            : (srv.bind_to_port(hp.first, hp.second) ? hp.second : -1);
  if (port <= 0) {
    return Error::unavailable(fmt::format("cannot listen on {} for the admin port", listen));
  }
  a->port_ = port;
  a->thread_ = std::thread([s = a->server_.get()] { s->listen_after_bind(); });
  return a;
}

void AdminHttp::stop() {
  if (server_)
    server_->stop();
  if (thread_.joinable())
    thread_.join();
}

AdminHttp::~AdminHttp() {
  stop();
}

}  // namespace meshid
