#include "ca/admin_http.h"

namespace meshid::ca {

Result<std::unique_ptr<AdminHttp>> startAdminHttp(const std::string& listen, AdminHandlers h) {
  std::vector<HttpRoute> routes;
  routes.push_back(
      {"/metrics", [h] {
         return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", h.metrics()};
       }});
  routes.push_back({"/healthz", [] { return HttpReply{200, "text/plain", "ok\n"}; }});
  routes.push_back({"/readyz", [h] {
                      std::string why;
                      bool ready = h.ready(&why);
                      return HttpReply{ready ? 200 : 503, "text/plain",
                                       ready ? "ready\n" : "not ready: " + why + "\n"};
                    }});
  routes.push_back({"/debug/ca", [h] {
                      return HttpReply{200, "application/json", h.debug_json()};
                    }});
  return AdminHttp::start(listen, std::move(routes));
}

}  // namespace meshid::ca
