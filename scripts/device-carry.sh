#!/usr/bin/env bash
# Prepares what benchmarks/device-node.sh needs on the GPU machine, which has no Node: a
# compressed node binary (/usr/bin/node is ~99 MB, over the 64 MiB that travels; xz makes it
# ~24 MB), the compiled dist/, and the CUDA addon build/Release/c3gan.node. Prints the device
# tool's carry list. Usage: bash scripts/device-carry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
mkdir -p build-carry
node_bin=$(readlink -f "$(command -v node)")
if [ ! -f build-carry/node.xz ] || [ "$node_bin" -nt build-carry/node.xz ]; then
  echo "compressing $node_bin ($(node --version))"
  xz -T2 -6 -c "$node_bin" > build-carry/node.xz.tmp
  mv build-carry/node.xz.tmp build-carry/node.xz
fi
npm run --silent build:ts
npm run --silent build:native  # CUDA AUTO: nvcc is on PATH above
if ! node -e "process.exit(/has no CUDA backend/.test(require('./dist/lib/native').native().cudaStatus()) ? 1 : 0)"; then
  echo "build/Release/c3gan.node has no CUDA backend" >&2
  exit 1
fi
carry="dist build/Release node_modules/node-gyp-build build-carry"
echo "carry: $carry"
du -cb $(git ls-files) 2>/dev/null | tail -n 1 | awk '{printf "tracked files %.1f MiB\n", $1 / 1048576}'
du -cb $carry | tail -n 1 | awk '{printf "carried %.1f MiB (the device tool takes 64 MiB in all)\n", $1 / 1048576}'
