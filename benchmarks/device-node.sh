#!/usr/bin/env bash
# The Node side of the CUDA check on a GPU machine: the second command of a lease, right after
# benchmarks/device-check.sh (which needs only cmake and nvcc). Prepare here with
# `bash scripts/device-carry.sh` and carry what it prints (dist, the CUDA addon, node.xz).
#   1. one training iteration at the CUB config (128 px, batch 64, K 400), c3gan and PyTorch
#      eager with cuDNN (default TF32 settings) alternating in one run: `c3gan bench --compare torch`;
#   1b. one profiled CUB iteration (`bench --profile`): which ops take the GPU's time;
#   1c. the same unwaited (`bench --profile host`): the host's cost against the GPU's backlog;
#   2. 1,000 iterations at the 32 px config: device memory must stay flat;
#   3. the CUB iteration again with C3GAN_CUDA_TILE=wgmma (Hopper's warpgroup MMA);
#   3b. and with C3GAN_CUDA_CONV=auto (each plain conv pass on the faster of the tile kernels and the
#       machine's cuDNN, both timed per shape: the table in the log);
#   4. with what the budget leaves, the TypeScript op tests on CUDA (C3GAN_DEVICE=cuda): every op
#      against float64 references, the gradient checks, PyTorch parity fixtures (ops and the whole
#      model), error paths, memory accounting, a short training run whose checkpoint must score the
#      same on the CPU.
# Every step has a time limit (7 minutes in all: with device-check.sh and the machine start it fits
# the 15 minutes of device time); the summary is printed whatever fails.
# The log goes to $OUT/device-node.log when $OUT is set. A dry run without a GPU:
#   C3GAN_ADDON=$PWD/build-emu/Release/c3gan.node C3GAN_DEVICE_NODE_SECONDS=900 bash benchmarks/device-node.sh
# (the emulated device runs out of time in steps 1-3, as it should, and passes step 4 in ~35 s;
# with less than ~460 s steps 1-3 leave step 4 nothing).
cd "$(dirname "$0")/.."
CHECK_NAME=device-node CHECK_SECONDS=${C3GAN_DEVICE_NODE_SECONDS:-420}
. benchmarks/device-steps.sh

NODE=""
if command -v node > /dev/null; then NODE=$(command -v node)
elif [ -f build-carry/node.xz ]; then
  xz -dc build-carry/node.xz > /tmp/c3gan-node && chmod +x /tmp/c3gan-node && NODE=/tmp/c3gan-node
fi
# C3GAN_ADDON names another addon (a dry run here: the emulated-CUDA one in build-emu/)
ADDON=${C3GAN_ADDON:-build/Release/c3gan.node}
if [ -z "$NODE" ] || [ ! -f "$ADDON" ] || [ ! -f dist/bin/c3gan.js ]; then
  note "not run: needs node (or build-carry/node.xz), $ADDON and dist/ (bash scripts/device-carry.sh, then carry them)"
  exit 1
fi
say "c3gan device-node check, $(date -u +%Y-%m-%dT%H:%M:%SZ), node $($NODE --version)"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
step info 30 "$NODE" dist/bin/c3gan.js info
note "info: $(grep '^cuda:' "$STEP_OUT" || tail -n 1 "$STEP_OUT")"
if ! grep -q '^cuda: available' "$STEP_OUT"; then note "CUDA is not available to the addon: nothing else to check"; exit 1; fi

# ---- 1. the CUB iteration, c3gan vs PyTorch + cuDNN ----
PY=python3
COMPARE=()
if $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > /dev/null 2>&1; then
  COMPARE=(--compare torch --python "$PY")
else
  note "PyTorch with CUDA not importable: the iteration runs without the side-by-side"
fi
step "CUB iteration" 180 "$NODE" dist/bin/c3gan.js bench --device cuda --configs cub-128px-b64 --runs 5 "${COMPARE[@]}"
note "CUB iteration (exit $STEP_RC): $(grep -E 'cub-128px-b64' "$STEP_OUT" | tail -n 1)"

# ---- 1b. where the CUB iteration's GPU time goes (every op call waits for its kernels) ----
step "CUB iteration profile" 45 "$NODE" dist/bin/c3gan.js bench --device cuda --configs cub-128px-b64 --runs 1 --profile
note "CUB profile (exit $STEP_RC): $(grep -E '^profile of' "$STEP_OUT" | cut -c1-220)"
while read -r l; do note "    $l"; done < <(awk '/^op +calls/{f=1; next} f && /^-/{next} f && NF==0{exit} f' "$STEP_OUT" | head -n 8)

# ---- 1c. the host side of the CUB iteration: nothing waited for, so each op's time is its host
# cost, and the GPU's backlog shows where the losses are read back (is the host the floor?) ----
step "CUB iteration, host profile" 30 "$NODE" dist/bin/c3gan.js bench --device cuda --configs cub-128px-b64 --runs 2 --profile host
note "CUB host profile (exit $STEP_RC): $(grep -E '^profile of' "$STEP_OUT" | cut -c1-420)"

# ---- 2. memory over 1,000 iterations ----
step "memory over 1000 iterations" 100 "$NODE" dist/benchmarks/memory-flat.js --device cuda --config 32px-ngf128-ndf32-K20-b64 --iterations 1000 --seconds 80
note "memory (exit $STEP_RC): $(grep -E 'iterations in|memory' "$STEP_OUT" | tr '\n' ' ')"

# ---- 3. the CUB iteration on the wgmma tile pipeline (c3gan only; against step 1's) ----
step "CUB iteration, wgmma tiles" 75 env C3GAN_CUDA_TILE=wgmma "$NODE" dist/bin/c3gan.js bench --device cuda \
  --configs cub-128px-b64 --runs 3
note "CUB iteration, C3GAN_CUDA_TILE=wgmma (exit $STEP_RC): $(grep -E 'cub-128px-b64|sm_90a' "$STEP_OUT" | tail -n 1)"

# ---- 3b. the CUB iteration with the conv engine chosen per pass and shape (C3GAN_CUDA_CONV=auto: the
# tile kernels and cuDNN timed once each, in the warm-up iteration; c3gan only, against step 1's):
# how much of the gap to PyTorch is the conv kernels, and the table of both engines' times for
# every conv pass of the iteration (in the log) ----
CUDNN_DIR=$(cudnn_dir)
if [ -n "$CUDNN_DIR" ]; then
  step "CUB iteration, conv engines auto" 75 env C3GAN_CUDNN="$CUDNN_DIR" LD_LIBRARY_PATH="$CUDNN_DIR:${LD_LIBRARY_PATH:-}" \
    C3GAN_CUDA_CONV=auto "$NODE" dist/bin/c3gan.js bench --device cuda --configs cub-128px-b64 --runs 3
  note "CUB iteration, C3GAN_CUDA_CONV=auto (exit $STEP_RC): $(grep -E '^cub-128px-b64 ' "$STEP_OUT" | tail -n 1)"
  note "    $(grep -E '^conv engines \(auto\)' "$STEP_OUT" | cut -c1-400)"
else
  note "cudnn: no libcudnn found, the CUB iteration with cuDNN convs skipped"
fi

# ---- 4. the TypeScript op tests on CUDA (last: the native cases of device-check.sh already compared
# every kernel with the CPU; these need what the budget leaves) ----
TESTS="dist/test/ops.test.js dist/test/gradcheck.test.js dist/test/const-channels.test.js dist/test/parity.test.js dist/test/errors.test.js dist/test/memory.test.js dist/test/memory-v8.test.js dist/test/model-parity.test.js dist/test/train-device.test.js"
step "op tests on CUDA" 200 env C3GAN_DEVICE=cuda "$NODE" --test --test-concurrency=1 --test-reporter=tap $TESTS
note "op tests on CUDA (exit $STEP_RC): $(grep -E '^# (tests|pass|fail|skipped) ' "$STEP_OUT" | tr '\n' ' ')"
while read -r l; do note "    $l"; done < <(grep -E '^not ok|^    not ok' "$STEP_OUT" | head -n 20)
