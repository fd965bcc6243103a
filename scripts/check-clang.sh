#!/usr/bin/env bash
# Builds the native core and its op test program with Clang (the compiler of macOS laptops and
# of Apple's Xcode tools) into build-clang/, warnings as errors, runs every CPU case, then
# compiles the N-API binding (native/napi) with Clang too, and the core and the op tests for
# AArch64 (Apple silicon) where its headers are installed, warnings as errors. GCC builds
# everything else; this keeps the code within what both accept (e.g. C++17 lambdas may not
# capture structured bindings: GCC allows it, Clang refuses).
#
#   scripts/check-clang.sh            # all of it (~1 min on 2 cores)
#
# Needs clang (apt-get install -y clang) and cmake. JOBS (default 2) sets the build's parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build-clang
JOBS=${JOBS:-2}
for tool in clang clang++ cmake; do
  if ! command -v "$tool" > /dev/null; then
    echo "check-clang: missing $tool; install it with: apt-get update && apt-get install -y clang" >&2
    exit 3
  fi
done
echo "== check-clang: $(clang++ --version | head -1)"
t0=$(date +%s)

# the core and the op test program, as CMake builds them for the addon, plus -Werror
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
  -DC3GAN_CUDA=OFF -DCMAKE_CXX_FLAGS=-Werror > "$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log" >&2; echo "check-clang: cmake configure FAILED" >&2; exit 1; }
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" --target c3gan_op_test -j "$JOBS"
echo "== check-clang: build took $(($(date +%s) - t0)) s"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
"./$BUILD/c3gan_op_test" --device cpu 2>&1 | tee "$log" || rc=$?
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 || true)
if [ "$rc" -ne 0 ] || [ -z "$summary" ] || [ "${summary%% *}" -eq 0 ]; then
  echo "check-clang: op cases FAILED: exit $rc${summary:+, $summary}" >&2
  grep '^FAIL' "$log" >&2 || true
  exit 1
fi

# the binding: compiled (not linked) against the running Node's headers with binding.gyp's defines
node_include="$(dirname "$(dirname "$(command -v node)")")/include/node"
if [ ! -f "$node_include/node_api.h" ]; then
  echo "check-clang: no Node headers at $node_include (node_api.h); the binding was not compiled" >&2
  exit 1
fi
addon_include=$(node -p "require('node-addon-api').include_dir")
version=$(node -p "require('./package.json').version")
t1=$(date +%s)
printf '%s\n' native/napi/*.cc | xargs -P "$JOBS" -I{} clang++ -std=c++17 -O1 -fsyntax-only -Werror -Wall -Wextra \
  -Wno-unused-parameter -fexceptions -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED \
  "-DC3GAN_VERSION=\"$version\"" -I "$node_include" -I "$addon_include" {} ||
  { echo "check-clang: the N-API binding does not compile with Clang" >&2; exit 1; }
echo "== check-clang: binding compiled in $(($(date +%s) - t1)) s"

# AArch64, Apple silicon's architecture: the core (its NEON kernels) and the op tests compiled by
# Clang for it, warnings as errors (not run: check-arm64.sh runs GCC's AArch64 build under qemu).
# Needs the AArch64 C++ headers of g++-aarch64-linux-gnu (/usr/aarch64-linux-gnu).
if [ -d /usr/aarch64-linux-gnu/include ]; then
  t2=$(date +%s)
  printf '%s\n' native/core/*.cc native/cpu/*.cc native/test/*.cc | xargs -P "$JOBS" -I{} clang++ \
    --target=aarch64-linux-gnu -std=c++17 -O2 -fsyntax-only -Werror -Wall -Wextra -Wno-unused-parameter {} ||
    { echo "check-clang: the core does not compile with Clang for AArch64" >&2; exit 1; }
  echo "== check-clang: AArch64 compile took $(($(date +%s) - t2)) s"
else
  echo "== check-clang: no AArch64 headers (apt-get install -y g++-aarch64-linux-gnu): AArch64 compile skipped"
fi
echo "check-clang: all passed ($summary; $(($(date +%s) - t0)) s in all)"
