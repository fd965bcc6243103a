#!/usr/bin/env bash
# Cross-builds the native op test program (c3gan_op_test: native/core, native/cpu, native/test;
# no Node, no CUDA) for Linux on AArch64 into build-arm64/ and runs it under qemu-user: every
# case with the NEON 12x8 GEMM kernel (the default on AArch64; the kernel sweeps in the gemm and
# conv2d cases run the portable one too), then the conv2d and winograd cases, whose default
# routing packs for the active kernel's tile, with C3GAN_GEMM_KERNEL=portable (6x8), less the two
# that sweep every kernel themselves. The runs go side by side, JOBS at a time.
#
#   scripts/check-arm64.sh                      # as above (~1.5 min under qemu on 2 cores, plus the build)
#   scripts/check-arm64.sh --kernels neon       # only the NEON run
#   scripts/check-arm64.sh --filter gemm --filter conv2d   # only cases whose names contain a filter,
#                                                          # with each kernel in --kernels
#
# Needs Debian/Ubuntu's cross compiler and qemu-user:
#   apt-get update && apt-get install -y g++-aarch64-linux-gnu qemu-user
# JOBS (default 2) sets the build's parallelism and how many qemu runs go at once. Exits non-zero on a build error, on any failed
# case, when a filter matches no case, or when the program does not run the kernel asked for.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build-arm64
SYSROOT=/usr/aarch64-linux-gnu
JOBS=${JOBS:-2}
KERNELS="neon,portable"
FILTERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernels) KERNELS=${2:?--kernels needs a list, e.g. neon,portable}; shift 2 ;;
    --filter) FILTERS+=("${2:?--filter needs a case name (substring)}"); shift 2 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-arm64: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
[ -d "$SYSROOT/lib" ] || missing+=("$SYSROOT (the aarch64 libc)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-arm64: missing ${missing[*]}" >&2
  echo "check-arm64: install the cross toolchain and qemu with:" >&2
  echo "    apt-get update && apt-get install -y g++-aarch64-linux-gnu qemu-user" >&2
  exit 3
fi

t0=$(date +%s)
# configure once (the generator of an existing build-arm64 is kept); no CUDA, and CMAKE_JS_VERSION
# is unset outside cmake-js, so the Node addon is not part of this build
gen=()
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja > /dev/null; then gen=(-G Ninja); fi
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_TOOLCHAIN_FILE="$PWD/scripts/arm64-toolchain.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DC3GAN_CUDA=OFF > "$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log" >&2; echo "check-arm64: cmake configure FAILED" >&2; exit 1; }
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" --target c3gan_op_test -j "$JOBS"
t1=$(date +%s)
echo "== check-arm64: build took $((t1 - t0)) s"

declare -A kernel_name=([neon]="neon 12x8" [portable]="portable 6x8")
# Without --filter each kernel runs these jobs: "filter|exclude" ("" filter: every case). Under
# qemu a case runs on one core whatever the thread count, so the jobs run side by side (JOBS at a
# time); the neon run's three slowest cases (about half its time) are a job of their own. The
# portable runs leave out the two cases that sweep every micro-kernel themselves: they ran the
# portable one in the neon run.
NEON_SLOW=speed_conv2d_fast_paths_match_reference,speed_winograd_matches_direct_conv,speed_gemm_every_kernel_matches_reference
SWEEPS=speed_conv2d_fast_paths_match_reference,speed_conv2d_up_matches_upsampled_conv
declare -A default_jobs=([neon]="|$NEON_SLOW $NEON_SLOW|" [portable]="winograd|$SWEEPS conv2d|$SWEEPS")
jobs_k=() jobs_f=() jobs_x=()
IFS=',' read -r -a kernel_list <<< "$KERNELS"
for k in "${kernel_list[@]}"; do
  [ -n "${kernel_name[$k]:-}" ] || { echo "check-arm64: unknown kernel '$k' (neon, portable)" >&2; exit 2; }
  if [ ${#FILTERS[@]} -gt 0 ]; then
    for f in "${FILTERS[@]}"; do jobs_k+=("$k") jobs_f+=("$f") jobs_x+=(""); done
  else
    for job in ${default_jobs[$k]}; do jobs_k+=("$k") jobs_f+=("${job%%|*}") jobs_x+=("${job#*|}"); done
  fi
done

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
# one job: its output in $LOGS/<i>.log, its exit status in $LOGS/<i>.rc, its seconds in $LOGS/<i>.s
run_job() {
  local i=$1 k=${jobs_k[$1]} f=${jobs_f[$1]} x=${jobs_x[$1]} ts rc=0
  local args=(--device cpu)
  [ -n "$f" ] && args+=(--filter "$f")
  [ -n "$x" ] && args+=(--exclude "$x")
  ts=$(date +%s)
  {
    echo "== check-arm64: C3GAN_GEMM_KERNEL=$k qemu-aarch64 -L $SYSROOT ./$BUILD/c3gan_op_test ${args[*]}"
    C3GAN_GEMM_KERNEL=$k qemu-aarch64 -L "$SYSROOT" "./$BUILD/c3gan_op_test" "${args[@]}" 2>&1 || rc=$?
  } > "$LOGS/$i.log"
  echo "$rc" > "$LOGS/$i.rc"
  echo $(($(date +%s) - ts)) > "$LOGS/$i.s"
}
running=0
for i in "${!jobs_k[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
  run_job "$i" &
  running=$((running + 1))
done
wait

failed=0
for i in "${!jobs_k[@]}"; do
  k=${jobs_k[$i]} f=${jobs_f[$i]} x=${jobs_x[$i]} want=${kernel_name[${jobs_k[$i]}]}
  what="$k${f:+, filter $f}${x:+, less $x}"
  log="$LOGS/$i.log"
  cat "$log"
  rc=$(cat "$LOGS/$i.rc" 2>/dev/null || echo "no status")
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 || true)
  if [ "$rc" != 0 ]; then
    echo "check-arm64: FAILED ($what): exit $rc${summary:+, $summary}" >&2
    grep '^FAIL' "$log" >&2 || true
    failed=1
  elif ! grep -qx "cpu gemm kernel: $want" "$log"; then
    echo "check-arm64: FAILED ($what): the program did not run the '$want' kernel" >&2
    failed=1
  elif [ -z "$summary" ] || [ "${summary%% *}" -eq 0 ]; then
    echo "check-arm64: FAILED ($what): no case ran${summary:+ ($summary)}" >&2
    failed=1
  fi
  echo "== check-arm64: $what: ${summary:-no summary} in $(cat "$LOGS/$i.s" 2>/dev/null || echo '?') s"
done
echo "== check-arm64: total $(($(date +%s) - t0)) s"
if [ "$failed" -ne 0 ]; then
  echo "check-arm64: FAILED" >&2
  exit 1
fi
echo "check-arm64: all passed"
