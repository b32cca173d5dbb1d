#!/usr/bin/env bash
# Installs every system package meshid's build, tests and demo need, from
# Debian's packages, plus the npm test tools. Idempotent: when everything is
# present it prints one line and touches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache git
  # libraries
  libssl-dev openssl libgrpc++-dev libgrpc-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev prometheus-cpp-dev
  libcpp-httplib-dev libsqlite3-dev libcurl4-openssl-dev libasio-dev libnghttp2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # real peers and tools used by tests, CI and the demo
  clang libclang-rt-14-dev clang-format curl jq procps iproute2 util-linux prometheus sqlite3 golang-cfssl
  nginx python3
  # peers for the proxy benchmark (bench/proxy_compare.sh), and perf for its system-call row
  haproxy stunnel4 libnginx-mod-stream linux-perf
)
# A machine may already carry a Node.js build that bundles npm (and conflicts
# with Debian's npm package): ask Debian only for what is absent.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages (run as root): ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

# Node test tools (independent gRPC client for interop tests), pinned by tests/interop/package-lock.json.
if [[ -f tests/interop/package.json && ! -d tests/interop/node_modules ]]; then
  echo "deps: installing npm test tools"
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "deps: all present"
