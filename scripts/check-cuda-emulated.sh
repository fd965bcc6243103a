#!/usr/bin/env bash
# Runs the CUDA backend on this machine's CPU through the emulator (native/cuda/emu: every CUDA
# thread a fiber; no GPU and no nvcc needed). Builds the addon and the native op test program with
# C3GAN_CUDA=EMULATE into build-emu/, then:
#   1. c3gan_op_test --device cuda in exact-fp32 mode: every op case on the emulated device, the
#      emulator's own checks, the host checks of the kernels' index maps, CPU-vs-CUDA comparisons;
#   2. the CPU-vs-CUDA comparisons again in TF32 mode (the default math);
#   3. the TypeScript suites with C3GAN_DEVICE=cuda and C3GAN_ADDON=build-emu's addon (op tests,
#      gradient checks, PyTorch parity of the ops and of the whole model, training, the CLI).
# It proves the kernels' logic (indexing, barriers, shuffles, the mma fragment layout, split K,
# the runtime and its error paths), not their speed or freedom from races: those need a GPU.
#
#   scripts/check-cuda-emulated.sh            # all three (~3 min on 2 cores, plus the build)
#   scripts/check-cuda-emulated.sh --native   # 1 and 2 only (no Node build of dist/ needed)
#
# Step 3 needs dist/ (npm run build:ts). Exits non-zero on a build error or any failed case.
set -euo pipefail
cd "$(dirname "$0")/.."

NATIVE_ONLY=0
case "${1:-}" in
  --native) NATIVE_ONLY=1 ;;
  "") ;;
  -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "check-cuda-emulated: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

C3GAN_CUDA=EMULATE node scripts/build-native.js
TEST=build-emu/c3gan_op_test
ADDON="$PWD/build-emu/Release/c3gan.node"

echo "== emulated CUDA: every native op case (fp32 math)"
C3GAN_CUDA_MATH=fp32 "$TEST" --device cuda | grep -v '^ok '
echo "== emulated CUDA: CPU-vs-CUDA comparisons in TF32 math"
C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda --filter cuda_vs_cpu | grep -v '^ok '
[ "$NATIVE_ONLY" = 1 ] && exit 0

if [ ! -f dist/test/ops.test.js ]; then
  echo "check-cuda-emulated: dist/ is missing (npm run build:ts)" >&2
  exit 1
fi
echo "== emulated CUDA: the TypeScript suites with C3GAN_DEVICE=cuda"
# all but pack.test (it checks the packed prebuild, which C3GAN_ADDON would replace)
FILES=()
for f in dist/test/*.test.js; do [ "$f" = dist/test/pack.test.js ] || FILES+=("$f"); done
C3GAN_ADDON="$ADDON" C3GAN_DEVICE=cuda node --test --test-concurrency=1 "${FILES[@]}"
