#!/usr/bin/env bash
# Runs the CUDA backend on this machine's CPU through the emulator (native/cuda/emu: every CUDA
# thread a fiber; no GPU and no nvcc needed). Builds the addon and the native op test program with
# C3GAN_CUDA=EMULATE into build-emu/, then:
#   1. c3gan_op_test --device cuda in exact-fp32 math: every op case on the emulated device, the
#      emulator's own checks, the host checks of the kernels' index maps, CPU-vs-CUDA comparisons
#      (with --asan, the CPU device's cases too, and a planted kernel overrun that must be reported);
#   2. the same in the default TF32 math with the threads of each block and the blocks of each
#      grid run in a shuffled order (a result that depends on the order is a race), and again with
#      the tile GEMM's cp.async pipeline (C3GAN_CUDA_TILE=async; its copies land only when a
#      wait retires them, so a read before the wait sees the stage's old contents), and with its
#      wgmma pipeline (C3GAN_CUDA_TILE=wgmma; products formed when wgmma.wait_group retires them),
#      and the conv cases through the stand-in cuDNN (native/cuda/emu/cudnn_mock.cc:
#      C3GAN_CUDNN=<it> C3GAN_CUDA_CONV=cudnn);
#   3. the TypeScript suites with C3GAN_DEVICE=cuda and C3GAN_ADDON=build-emu's addon (op tests,
#      gradient checks, PyTorch parity of the ops and of the whole model, training, the CLI);
#   4. the CUB batch-64 training iteration with the kernels skipped (C3GAN_CUDA_EMU_KERNELS=skip:
#      every launch checked, none run), repeated until the device memory shows it stays flat
#      (benchmarks/memory-flat.ts: 1,000 iterations, 50 under ASan, where each takes ~0.16 s).
# It proves the kernels' logic (indexing, barriers, shuffles, the mma fragment layout, split K,
# the runtime and its error paths), not their speed nor races that no fiber order exposes: those
# need a GPU.
#
#   scripts/check-cuda-emulated.sh            # all four (~3 min on 2 cores, plus the build)
#   scripts/check-cuda-emulated.sh --native   # 1 and 2 only (no Node build of dist/ needed)
#   scripts/check-cuda-emulated.sh --asan     # under AddressSanitizer (build-emu-asan/): 1 and 2 as
#                                             # one pass (fp32, shuffled), the CPU device's cases,
#                                             # then 3 (TF32 there) and 4; CI runs this (~9 min on 2 cores)
#
# Steps 3 and 4 need dist/ (npm run build:ts). Exits non-zero on a build error, any failed case or any
# sanitizer report. JOBS (default 2) sets the build's parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."

NATIVE_ONLY=0
ASAN=0
for arg in "$@"; do
  case "$arg" in
    --native) NATIVE_ONLY=1 ;;
    --asan) ASAN=1 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-cuda-emulated: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$ASAN" = 1 ]; then
  # one AddressSanitizer build (cmake-js: the addon and the op test program) serves every step;
  # Node loads the instrumented addon with libasan preloaded
  BUILD=build-emu-asan
  node node_modules/cmake-js/bin/cmake-js build --out "$BUILD" --CDC3GAN_CUDA=EMULATE --CDC3GAN_SANITIZE=address \
    --parallel "${JOBS:-2}"
  PRELOAD=$("${CXX:-g++}" -print-file-name=libasan.so)
else
  C3GAN_CUDA=EMULATE node scripts/build-native.js
  BUILD=build-emu
  PRELOAD=
fi
TEST=$BUILD/c3gan_op_test
ADDON="$PWD/$BUILD/Release/c3gan.node"
SAN=$([ "$ASAN" = 1 ] && echo " under AddressSanitizer" || true)

if [ "$ASAN" = 1 ]; then
  # one pass of the native cases (CI's time): fp32 math, shuffled order; TF32 runs in step 3. The
  # emulator runs a launch on one thread, so the passes go in two lanes side by side, the two
  # slowest cases apart from the rest (2 cores: 161 s one after another -> ~110 s); each lane's
  # output is printed when both have ended, less the passing cases' lines.
  SLOW=cuda_vs_cpu_gemm_shapes_transposes_and_modes,cuda_vs_cpu_conv2d_code_channels
  lane_a() {
    local rc=0
    echo "== emulated CUDA under AddressSanitizer: every native op case in fp32 math, shuffled order (less $SLOW)"
    C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=fp32 "$TEST" --device cuda --exclude "$SLOW" || rc=1
    echo "== emulated CUDA under AddressSanitizer: the convolutions through the stand-in cuDNN (C3GAN_CUDA_CONV=cudnn)"
    C3GAN_CUDNN="$BUILD/Release/libc3gan_cudnn_mock.so" C3GAN_CUDA_CONV=cudnn C3GAN_CUDA_EMU_ORDER=shuffle \
      C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda --filter conv2d,cudnn || rc=1
    return $rc
  }
  lane_b() {
    local rc=0
    echo "== emulated CUDA under AddressSanitizer: $SLOW in fp32 math, shuffled order"
    C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=fp32 "$TEST" --device cuda --filter "$SLOW" || rc=1
    # (CI's time: the pipelines' bitwise agreement, the moments and the conv cases; the agreement
    # case runs the wgmma pipeline too, on gemm, every conv pass and the up-conv)
    echo "== emulated CUDA under AddressSanitizer: the cp.async tile pipeline, TF32 math, shuffled order (conv and gemm cases)"
    C3GAN_CUDA_TILE=async C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda \
      --filter pipelines,moments,conv2d_forward_against,conv2d_backward_against,cuda_vs_cpu_conv2d_all || rc=1
    echo "== CPU backend under AddressSanitizer: every native op case but the CUDA ones (run above)"
    "$TEST" --device cpu --exclude cuda_ || rc=1
    return $rc
  }
  LOGS=$(mktemp -d)
  lane_a > "$LOGS/a" 2>&1 &
  A_PID=$!
  b=0
  lane_b > "$LOGS/b" 2>&1 || b=$?
  a=0
  wait "$A_PID" || a=$?
  grep -hv '^ok ' "$LOGS/a" "$LOGS/b" || true
  rm -rf "$LOGS"
  if [ "$a" -ne 0 ] || [ "$b" -ne 0 ]; then
    echo "check-cuda-emulated: native op cases FAILED (see the FAIL lines and summaries above)" >&2
    exit 1
  fi
  echo "== AddressSanitizer sees a kernel writing one int past a tensor"
  if out=$(C3GAN_EMU_EXPECT_ASAN=1 "$TEST" --device cuda --filter asan_sees 2>&1); then
    echo "$out"; echo "check-cuda-emulated: the planted overrun was not reported" >&2; exit 1
  fi
  echo "$out" | grep -q "use-after-poison" && echo "$out" | grep -q "write_one_past" ||
    { echo "$out" | tail -n 30; echo "check-cuda-emulated: no sanitizer report naming the kernel" >&2; exit 1; }
  echo "reported: $(echo "$out" | grep -m1 'ERROR: AddressSanitizer')"
else
  echo "== emulated CUDA: every native op case (fp32 math)"
  C3GAN_CUDA_MATH=fp32 "$TEST" --device cuda | grep -v '^ok '
  echo "== emulated CUDA: every native op case in TF32 math, threads and blocks in shuffled order (races)"
  C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda | grep -v '^ok '
  echo "== emulated CUDA: the cp.async tile pipeline (C3GAN_CUDA_TILE=async), TF32 math, shuffled order"
  C3GAN_CUDA_TILE=async C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda --exclude cuda_emulator |
    grep -v '^ok '
  echo "== emulated CUDA: the wgmma tile pipeline (C3GAN_CUDA_TILE=wgmma), TF32 math, shuffled order"
  C3GAN_CUDA_TILE=wgmma C3GAN_CUDA_EMU_ORDER=shuffle C3GAN_CUDA_MATH=tf32 "$TEST" --device cuda --exclude cuda_emulator |
    grep -v '^ok '
  echo "== emulated CUDA: the convolutions through the stand-in cuDNN (C3GAN_CUDA_CONV=cudnn), fp32 and TF32"
  for math in fp32 tf32; do
    C3GAN_CUDNN="$BUILD/Release/libc3gan_cudnn_mock.so" C3GAN_CUDA_CONV=cudnn C3GAN_CUDA_EMU_ORDER=shuffle \
      C3GAN_CUDA_MATH=$math "$TEST" --device cuda --filter conv2d,cudnn | grep -v '^ok '
  done
fi
[ "$NATIVE_ONLY" = 1 ] && exit 0

if [ ! -f dist/test/ops.test.js ]; then
  echo "check-cuda-emulated: dist/ is missing (npm run build:ts)" >&2
  exit 1
fi
echo "== emulated CUDA$SAN: the TypeScript suites with C3GAN_DEVICE=cuda"
# all but pack.test (it checks the packed prebuild, which C3GAN_ADDON would replace)
FILES=()
for f in dist/test/*.test.js; do [ "$f" = dist/test/pack.test.js ] || FILES+=("$f"); done
# (leak checks off for Node, which keeps its heap to the end by design); two files at a time: the
# emulator runs a launch's blocks on one thread, so a second file keeps the other core busy (under
# ASan on 2 cores: 157 s -> 109 s)
LD_PRELOAD=$PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} C3GAN_ADDON="$ADDON" C3GAN_DEVICE=cuda \
  node --test --test-concurrency=2 "${FILES[@]}"

# the host side of a GPU run (autograd, the caching allocator, pinned staging) at the CUB config:
# the allocator's in-use bytes and its driver allocations must stop changing after the first
# iterations (device-node.sh checks the same on a GPU with the kernels run)
ITERATIONS=$([ "$ASAN" = 1 ] && echo 50 || echo 1000)
echo "== emulated CUDA$SAN: $ITERATIONS CUB batch-64 iterations with the kernels skipped: device memory flat"
LD_PRELOAD=$PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} C3GAN_ADDON="$ADDON" C3GAN_CUDA_EMU_KERNELS=skip \
  C3GAN_CUDA_EMU_MEMORY=200G node dist/benchmarks/memory-flat.js --device cuda --config cub-128px-b64 \
  --iterations "$ITERATIONS" | grep -v '^iteration '
