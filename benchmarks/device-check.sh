#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, run once per lease (no Node needed):
#   1. build c3gan_op_test and c3gan_cuda_bench with plain CMake for sm_90a;
#   2. the tensor-core layout probe (its verdict in the summary), then every native op case on CUDA
#      in exact-FP32 mode (the cases' tolerances are float32's),
#      then the cuda_vs_cpu cases (both math modes, against the CPU backend) and the host
#      index checks, then a compute-sanitizer memcheck pass over the CUDA comparisons;
#      (the constant-channel kernel's cases are checked to have run; a racecheck of them comes
#      last, in whatever time the timings leave);
#      the conv cases again through the machine's cuDNN (C3GAN_CUDA_CONV=cudnn);
#   3. timings: GEMM 4096^3 and conv2d on CUB shapes (TF32 and FP32) against the H200 peaks, and
#      the same convolutions through PyTorch/cuDNN for a ratio when torch is importable.
# Every step has a time limit (about 5 minutes in all); the summary is printed whatever fails.
# The log goes to $OUT/device-check.log when $OUT is set. Usage: bash benchmarks/device-check.sh
cd "$(dirname "$0")/.."
CHECK_NAME=device-check CHECK_SECONDS=285  # the whole check stays under 5 minutes
. benchmarks/device-steps.sh
BUILD=${C3GAN_DEVICE_CHECK_BUILD:-build-gpu}  # the build folder (override to reuse one)
JOBS=$(nproc 2>/dev/null || echo 8)

# the "N passed, M failed" line of an op-test run, or what went wrong
test_line() {
  local label=$1 line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$STEP_OUT" | tail -n 1)
  if [ -n "$line" ]; then
    note "$label: $line (exit $STEP_RC)"
    while read -r f; do note "    $f"; done < <(grep -E '^FAIL ' "$STEP_OUT" | head -n 20)
  else
    note "$label: no summary line (exit $STEP_RC); last output: $(tail -n 1 "$STEP_OUT")"
  fi
}

say "c3gan device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $JOBS cores"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv 2>&1 | tee -a "$LOG"
command -v nvcc > /dev/null || export PATH=/usr/local/cuda/bin:$PATH
say "$(nvcc --version 2>&1 | tail -n 1); $(cmake --version 2>&1 | head -n 1)"

# ---- 1. build ----
step "configure" 90 cmake -S . -B "$BUILD" -DC3GAN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real -DCMAKE_BUILD_TYPE=Release
if [ "$STEP_RC" -ne 0 ]; then note "configure: FAILED (exit $STEP_RC)"; exit 1; fi
# the bench needs only c3core, so a test program that fails to build still leaves the timings
step "build c3core and the bench" 150 cmake --build "$BUILD" -j"$JOBS" --target c3gan_cuda_bench
BENCH_OK=$STEP_RC
[ "$BENCH_OK" -ne 0 ] && note "build (c3core, bench): FAILED (exit $STEP_RC): $(grep -m1 -E 'error' "$STEP_OUT")"
step "build the op test program" 90 cmake --build "$BUILD" -j"$JOBS" --target c3gan_op_test
TEST_OK=$STEP_RC
[ "$TEST_OK" -ne 0 ] && note "build (op test): FAILED (exit $STEP_RC): $(grep -m1 -E 'error' "$STEP_OUT")"
[ "$BENCH_OK" -ne 0 ] && [ "$TEST_OK" -ne 0 ] && exit 1
note "build: done ($(( $(date +%s) - START )) s since start)"
TEST="$BUILD/c3gan_op_test"
BENCH="$BUILD/c3gan_cuda_bench"
# the wgmma kernels are there as Hopper's own instructions (HGMMA in SASS; 0: no sm_90a code)
if [ "$BENCH_OK" -eq 0 ] && command -v cuobjdump > /dev/null; then
  step "SASS of the bench: HGMMA instructions" 30 sh -c "cuobjdump -sass '$BENCH' | grep -c HGMMA"
  note "sass: $(tail -n 1 "$STEP_OUT") HGMMA instructions in the bench binary (exit $STEP_RC)"
fi

# ---- 2. correctness ----
if [ "$TEST_OK" -eq 0 ]; then
  # the tensor-core layouts the kernels assume, asked of the GPU (native/cuda/layout_probe.cu), in a
  # process of its own: a fault there (a sticky error, which fails every later case of its
  # process) cannot spoil the other cases. On a FAIL its
  # message says what the hardware did instead (which register holds which row and column;
  # whether wgmma's descriptor strides are the other way round)
  PROBE=cuda_tensor_core_layouts_match_the_kernels
  step "tensor-core layout probe" 30 "$TEST" --device cuda --filter "$PROBE"
  note "tensor-core layout probe: $(grep -m1 -E "^(ok|FAIL) +$PROBE" "$STEP_OUT" || echo "no result (exit $STEP_RC): $(tail -n 1 "$STEP_OUT")")"
  grep -q "wgmma not probed" "$STEP_OUT" && note "    wgmma not probed (no sm_90a code on this device)"
  # the case that runs every tile pipeline, wgmma too, likewise alone (and in the wgmma step below)
  PIPES=cuda_vs_cpu_tile_pipelines_agree_bitwise
  step "the tile pipelines agree (registers, cp.async, wgmma)" 45 "$TEST" --device cuda --filter "$PIPES"
  note "tile pipelines: $(grep -m1 -E "^(ok|FAIL) +$PIPES" "$STEP_OUT" || echo "no result (exit $STEP_RC): $(tail -n 1 "$STEP_OUT")")"
  ALONE="$PROBE,$PIPES"

  step "cuda status and every op case, exact fp32" 120 env C3GAN_CUDA_MATH=fp32 "$TEST" --device cuda --exclude "$ALONE"
  test_line "op cases on cuda (fp32 mode, incl. cuda_vs_cpu and host checks)"
  if grep -q "^cuda: unavailable" "$STEP_OUT"; then note "$(grep -m1 "^cuda:" "$STEP_OUT")"; exit 1; fi
  # the constant-channel kernel (conv_const.cu): its CPU comparison and the op cases on CUDA
  for c in cuda_vs_cpu_conv2d_code_channels speed_conv2d_code_channels_match_tiled_conv speed_ops_conv2d_const_channels; do
    grep -qE "^(ok|FAIL) +$c" "$STEP_OUT" || note "    case $c did not run"
  done

  step "cuda_vs_cpu cases with the default math mode (tf32)" 90 "$TEST" --device cuda --filter cuda_ --exclude "$ALONE"
  test_line "cuda_vs_cpu + host checks (tf32 default)"

  step "cuda_vs_cpu cases on the cp.async tile pipeline (C3GAN_CUDA_TILE=async, tf32)" 60 \
    env C3GAN_CUDA_TILE=async "$TEST" --device cuda --filter cuda_vs_cpu --exclude "$ALONE"
  test_line "cuda_vs_cpu on the cp.async pipeline (tf32)"

  step "cuda_vs_cpu cases on the wgmma tile pipeline (C3GAN_CUDA_TILE=wgmma, tf32)" 60 \
    env C3GAN_CUDA_TILE=wgmma "$TEST" --device cuda --filter cuda_vs_cpu
  test_line "cuda_vs_cpu on the wgmma pipeline (tf32)"

  # the convolutions through the machine's cuDNN (C3GAN_CUDA_CONV=cudnn): every conv case against
  # the CPU and cuda_vs_cpu_conv2d_cudnn_engine (cuDNN against the tile kernels, deterministic)
  CUDNN_DIR=$(cudnn_dir)
  if [ -n "$CUDNN_DIR" ]; then
    step "conv cases through cuDNN (C3GAN_CUDA_CONV=cudnn, $CUDNN_DIR)" 45 env C3GAN_CUDNN="$CUDNN_DIR" \
      LD_LIBRARY_PATH="$CUDNN_DIR:${LD_LIBRARY_PATH:-}" C3GAN_CUDA_CONV=cudnn "$TEST" --device cuda --filter conv2d,cudnn
    test_line "conv cases through cuDNN ($(grep -m1 -oE 'cudnn [0-9]+\.[0-9]+\.[0-9]+' "$STEP_OUT" || echo 'no version line'))"
  else
    note "cudnn: no libcudnn found (python3's nvidia.cudnn or torch/lib, or ldconfig), the cuDNN path unchecked"
  fi

  if command -v compute-sanitizer > /dev/null; then
    step "compute-sanitizer memcheck of the CUDA comparisons" 75 compute-sanitizer --tool memcheck \
      --error-exitcode 9 --print-limit 20 "$TEST" --device cuda --filter cuda_vs_cpu
    errs=$(grep -m1 -E 'ERROR SUMMARY' "$STEP_OUT")
    note "memcheck: ${errs:-no summary (timed out or did not finish)} (exit $STEP_RC)"
    while read -r l; do note "    $l"; done < <(grep -E '^========= (Invalid|Out of|Address|Program hit)' "$STEP_OUT" | head -n 8)
  else
    note "memcheck: compute-sanitizer not found, skipped"
  fi
fi

# ---- 3. timings ----
# a bench run's verdict, and its warning where the tensor cores disagreed with the kernels (its
# TF32 rows then timed exact fp32, or the register pipeline for wgmma)
bench_verdict() {
  local label=$1 w
  if grep -q "^bench: all spot checks ok" "$STEP_OUT"; then note "$label: ok, spot checks passed"
  else note "$label: exit $STEP_RC: $(grep -m1 -E 'FAILED|failed|unavailable|sm_90a' "$STEP_OUT")"; fi
  w=$(grep -m1 '^WARNING:' "$STEP_OUT" || true)
  if [ -n "$w" ]; then note "    $label: $w"; fi
}
TSV=$(mktemp)
[ -n "${OUT:-}" ] && TSV="$OUT/cuda-bench.tsv"
if [ "$BENCH_OK" -eq 0 ]; then
  step "c3gan CUDA timings" 120 "$BENCH" --bench --out "$TSV" --reps 20
  bench_verdict "bench"
  while read -r l; do note "    $l"; done < <(grep -E 'TFLOP/s|TB/s|fwd\+BN stats' "$STEP_OUT")
  # the same products on the cp.async pipeline, to choose the default (tile_gemm.cuh async_tiles)
  step "c3gan CUDA timings on the cp.async tile pipeline" 90 env C3GAN_CUDA_TILE=async "$BENCH" --bench --reps 20 \
    --out "${OUT:-/tmp}/cuda-bench-async.tsv"
  bench_verdict "bench (async tiles)"
  while read -r l; do note "    async: $l"; done < <(grep -E 'TFLOP/s|fwd\+BN stats' "$STEP_OUT" | grep -v '^copy\|^axpy')
else
  note "bench: not built, no timings"
fi

PY=python3
if $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > /dev/null 2>&1; then
  cat > /tmp/c3gan_torch_ref.py <<'PYEOF'
# The bench's shapes through PyTorch (cuDNN convolutions, cuBLAS matmul), TF32 and FP32, and
# the ratio c3gan time / torch time read from the bench's TSV.
import sys, torch
tsv = {}
try:
    for line in open(sys.argv[1]):
        name, ms, tf = line.rstrip("\n").split("\t")
        tsv[name] = float(ms)
except OSError:
    pass
torch.backends.cudnn.benchmark = True
dev = "cuda"
def bench(f, reps=20):
    for _ in range(3): f()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps // 5): f()
        b.record(); b.synchronize()
        times.append(a.elapsed_time(b) / (reps // 5))
    return sorted(times)[2]
def show(name, ms, flops):
    ours = tsv.get(name)
    ratio = f"c3gan/torch {ours / ms:5.2f}x" if ours else "c3gan: n/a"
    print(f"torch {name:40s} {ms:9.3f} ms {flops / ms / 1e9:8.1f} TFLOP/s   {ratio}")
for tf32 in (True, False):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    mode = "tf32" if tf32 else "fp32"
    n = 4096
    A = torch.rand(n, n, device=dev) * 2 - 1; B = torch.rand(n, n, device=dev) * 2 - 1
    show(f"gemm {n}^3 {mode}", bench(lambda: A @ B), 2 * n ** 3)
    for label, N, C, H, K, R, s, p in (("3x3 s1 64->128 64x64 N64", 64, 64, 64, 128, 3, 1, 1),
                                       ("4x4 s2 64->128 64x64 N64", 64, 64, 64, 128, 4, 2, 1),
                                       ("3x3 s1 32->16 128x128 N64", 64, 32, 128, 16, 3, 1, 1)):
        x = torch.rand(N, C, H, H, device=dev) * 2 - 1
        w = torch.rand(K, C, R, R, device=dev) * 2 - 1
        y = torch.nn.functional.conv2d(x, w, stride=s, padding=p)
        dy = torch.rand_like(y) * 2 - 1
        OH = y.shape[2]
        flops = 2 * N * K * OH * OH * C * R * R
        tag = f"conv {label} {mode}"
        show(tag + " forward", bench(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p)), flops)
        show(tag + " backward_data", bench(lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=s, padding=p)), flops)
        show(tag + " backward_weight", bench(lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=s, padding=p)), flops)
    if not tf32:
        continue
    # the generator's upsample + 3x3 conv as the official model runs it (nn.Upsample, then the
    # conv; backward weight reads the upsampled map saved by forward)
    F = torch.nn.functional
    for label, N, C, H, K in (("128->128 16x16 N64", 64, 128, 16, 128), ("16->32 64x64 N64", 64, 16, 64, 32)):
        x = torch.rand(N, C, H, H, device=dev) * 2 - 1
        w = torch.rand(K, C, 3, 3, device=dev) * 2 - 1
        u = F.interpolate(x, scale_factor=2, mode="nearest")
        dy = torch.rand(N, K, 2 * H, 2 * H, device=dev) * 2 - 1
        flops = 2 * N * K * 4 * H * H * C * 9
        tag = f"conv up {label} {mode}"
        show(tag + " forward", bench(lambda: F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)), flops)
        show(tag + " backward_data", bench(lambda: torch.nn.grad.conv2d_input(u.shape, w, dy, padding=1)
             .reshape(N, C, H, 2, H, 2).sum((3, 5))), flops)
        show(tag + " backward_weight", bench(lambda: torch.nn.grad.conv2d_weight(u, w.shape, dy, padding=1)), flops)
print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name())
PYEOF
  step "PyTorch/cuDNN reference timings" 90 env PYTHONUNBUFFERED=1 $PY /tmp/c3gan_torch_ref.py "$TSV"
  if [ "$STEP_RC" -eq 0 ]; then while read -r l; do note "    $l"; done < <(grep -E '^torch ' "$STEP_OUT")
  else note "torch reference: exit $STEP_RC: $(tail -n 1 "$STEP_OUT")"; fi
else
  note "torch reference: python3 with CUDA torch not available, skipped"
fi

# the products on the wgmma pipeline (after the torch reference, which needs the budget more)
if [ "$BENCH_OK" -eq 0 ]; then
  step "c3gan CUDA timings on the wgmma tile pipeline" 90 env C3GAN_CUDA_TILE=wgmma "$BENCH" --bench --reps 20 \
    --out "${OUT:-/tmp}/cuda-bench-wgmma.tsv"
  bench_verdict "bench (wgmma tiles)"
  while read -r l; do note "    wgmma: $l"; done < <(grep -E 'TFLOP/s|fwd\+BN stats' "$STEP_OUT" | grep -v '^copy\|^axpy' | grep -v fp32)
fi

# ---- 4. with the time left: racecheck of conv_const.cu (shared-memory class sums per block) ----
if [ "${TEST_OK:-1}" -eq 0 ] && command -v compute-sanitizer > /dev/null; then
  step "compute-sanitizer racecheck of conv2d_code_channels" 45 compute-sanitizer --tool racecheck \
    --error-exitcode 9 --print-limit 10 "$TEST" --device cuda --filter cuda_vs_cpu_conv2d_code_channels
  errs=$(grep -m1 -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$STEP_OUT")
  note "racecheck (conv2d_code_channels): ${errs:-no summary (timed out or did not finish)} (exit $STEP_RC)"
fi
exit 0
