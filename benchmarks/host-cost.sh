#!/usr/bin/env bash
# The host's share of a CUDA training iteration, measured on a machine without a GPU: the emulated
# CUDA addon (build-emu/) with C3GAN_CUDA_EMU_KERNELS=skip checks every launch but runs no kernel
# and moves no device bytes, so what remains is the host's own path (JS autograd and tape, the
# binding, the caching allocator, pinned staging, launch set-up). Launches on a GPU are
# asynchronous, so an iteration can be no faster than this, plus the driver's own launch cost
# (~2-4 us per kernel, not emulated; `bench --profile host` on a GPU, device-node.sh step 1c,
# measures both). Results are garbage; only the time means anything.
#
#   benchmarks/host-cost.sh [configs] [runs]     # default: 128px-b64 (the CUB config), 60 runs
#
# Needs dist/ (npm run build:ts); builds build-emu/ when its addon is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${1:-128px-b64}
RUNS=${2:-60}
[ -f build-emu/Release/c3gan.node ] || C3GAN_CUDA=EMULATE node scripts/build-native.js
# the iteration's tensors are allocated for real (untouched pages cost nothing), so the emulated
# device gets room for the CUB batch-64 config
C3GAN_ADDON="$PWD/build-emu/Release/c3gan.node" C3GAN_CUDA_EMU_KERNELS=skip C3GAN_CUDA_EMU_MEMORY=${C3GAN_CUDA_EMU_MEMORY:-200G} \
  node dist/bin/c3gan.js bench --device cuda --configs "$CONFIGS" --runs "$RUNS" --profile host
