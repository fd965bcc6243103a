#!/usr/bin/env bash
# The CPU loops written once on eight-float vectors (native/cpu/vec8.h: AVX2 on x86, Advanced SIMD
# on AArch64) should give the same bits on both architectures. This builds native/tools/vec8_bits.cc
# (hashes of the direct conv loops, the blocked stride-2 tiles, the exp-based elementwise kernels
# and batch norm's sums on fixed inputs) for this x86-64 machine and for AArch64, runs the second
# under qemu-user, and compares the two.
#
#   scripts/check-vec8-bits.sh
#
# Needs an x86-64 machine with AVX2+FMA, the core built here (npm run build:native: build/libc3core.a),
# and what scripts/check-arm64.sh needs (it configures build-arm64/ the same way when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SYSROOT=/usr/aarch64-linux-gnu
[ -f build/libc3core.a ] || { echo "check-vec8-bits: build/libc3core.a is missing (npm run build:native)" >&2; exit 3; }
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" > /dev/null || { echo "check-vec8-bits: missing $tool (see scripts/check-arm64.sh)" >&2; exit 3; }
done
if [ ! -f build-arm64/CMakeCache.txt ]; then
  gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S . -B build-arm64 "${gen[@]}" -DCMAKE_TOOLCHAIN_FILE="$PWD/scripts/arm64-toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DC3GAN_CUDA=OFF > /dev/null
fi
cmake --build build-arm64 --target c3core -j "${JOBS:-2}" > /dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -O2 -std=c++17 -Wall -Wextra -Werror -Inative native/tools/vec8_bits.cc build/libc3core.a -lpthread -o "$out/x86"
aarch64-linux-gnu-g++ -O2 -std=c++17 -Wall -Wextra -Werror -Inative native/tools/vec8_bits.cc build-arm64/libc3core.a \
  -lpthread -o "$out/arm64"
"$out/x86" > "$out/x86.txt"
qemu-aarch64 -L "$SYSROOT" "$out/arm64" > "$out/arm64.txt"
echo "== x86-64 (AVX2)";       cat "$out/x86.txt"
echo "== AArch64 (NEON, qemu)"; cat "$out/arm64.txt"
if ! diff -q "$out/x86.txt" "$out/arm64.txt" > /dev/null; then
  echo "check-vec8-bits: FAILED: the two architectures differ" >&2
  exit 1
fi
echo "check-vec8-bits: the same bits on both"
