// The CA's admin port routes: /metrics, /healthz, /readyz, /debug/ca.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/admin_http.h"

namespace meshid::ca {

struct AdminHandlers {
  std::function<std::string()> metrics;     // Prometheus text
  std::function<bool(std::string*)> ready;  // false + why when not ready
  std::function<std::string()> debug_json;  // /debug/ca
};

Result<std::unique_ptr<AdminHttp>> startAdminHttp(const std::string& listen,
                                                  AdminHandlers handlers);

}  // namespace meshid::ca
