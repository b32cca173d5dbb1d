// meshid-proxy: the proxy alone, without the CA's and agent's gRPC code (a
// small binary for sidecars, and the one the GCC sanitizer stage checks).
#include <cstring>
#include <iostream>

#include "proxy/run.h"

int main(int argc, char** argv) {
  std::string config, level = "info";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      config = argv[++i];
    else if (std::strcmp(argv[i], "--log-level") == 0 && i + 1 < argc)
      level = argv[++i];
    else if (std::strcmp(argv[i], "proxy") == 0)
      continue;  // accepts `meshid-proxy proxy --config F`, the shape of `meshid proxy`
    else {
      std::cerr << "usage: meshid-proxy --config proxy.yaml [--log-level info]\n";
      return 2;
    }
  }
  if (config.empty()) {
    std::cerr << "usage: meshid-proxy --config proxy.yaml [--log-level info]\n";
    return 2;
  }
  meshid::SystemClock clock;
  auto r = meshid::proxy::runUntilSignalled(config, level, clock);
  if (!r.ok()) {
    std::cerr << "error: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}
