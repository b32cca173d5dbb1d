# meshid's front door. On a fresh Debian 12 machine:
#   make demo   # installs dependencies, builds, runs the demo
#   make test   # installs dependencies, builds, runs every test
BUILD_DIR     ?= build
BUILD_TYPE    ?= RelWithDebInfo
SANITIZE_DIR  ?= build-sanitize
SANITIZE_GCC_DIR ?= build-sanitize-gcc
TSAN_DIR      ?= build-tsan
JOBS          ?= 2
FUZZ_SECONDS  ?= 10

CMAKE_FLAGS := -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

# ccache: paths relative to the checkout and no working directory in the hash,
# so a fresh clone on the same machine (CI) reuses earlier compilations.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: all deps configure build test demo sanitize-test sanitize-proxy tsan fuzz ci format format-check clean

all: build

deps:
	@scripts/deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/build.ninja

build: deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

demo: build
	@scripts/demo.sh $(BUILD_DIR)/meshid

# The unit and integration tests again, built with clang + ASan/UBSan; the
# same build holds the libFuzzer targets.
$(SANITIZE_DIR)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DMESHID_SANITIZE=ON -DMESHID_FUZZ=ON

sanitize-test: deps $(SANITIZE_DIR)/build.ninja
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) --timeout 300

# clang 14 cannot build the proxy's event loop (C++20 coroutines with
# libstdc++): the proxy's integration tests run again with the proxy built by
# GCC with ASan/UBSan, meshid-proxy and `meshid proxy` (its SDS client is
# gRPC), while the CA and the agent come from the regular build
# (scripts/sanitize_proxy.sh). Its unit tests run in sanitize-test.
$(SANITIZE_GCC_DIR)/build.ninja:
	cmake -S . -B $(SANITIZE_GCC_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMESHID_SANITIZE=ON \
	  -DBUILD_TESTING=OFF

sanitize-proxy: build $(SANITIZE_GCC_DIR)/build.ninja
	cmake --build $(SANITIZE_GCC_DIR) -j $(JOBS) --target meshid-proxy meshid
	scripts/sanitize_proxy.sh $(SANITIZE_GCC_DIR) $(BUILD_DIR)

# meshid built by GCC with ThreadSanitizer: the CA under its transport and
# server tests and under load, the proxy under its mTLS and runtime tests
# (scripts/tsan.sh). Not the agent, nor the proxy's SDS client: their gRPC C++
# calls go through uninstrumented libgrpc, whose synchronization TSan cannot see.
$(TSAN_DIR)/build.ninja:
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
	  -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_CXX_FLAGS=-fsanitize=thread \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread

tsan: build $(TSAN_DIR)/build.ninja
	cmake --build $(TSAN_DIR) -j $(JOBS) --target meshid
	scripts/tsan.sh $(TSAN_DIR)/meshid $(BUILD_DIR)

fuzz: deps $(SANITIZE_DIR)/build.ninja
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	scripts/fuzz.sh $(SANITIZE_DIR) $(FUZZ_SECONDS)

ci:
	.ci/run

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR) $(SANITIZE_GCC_DIR)
