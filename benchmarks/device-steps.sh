# Shared by the GPU-machine scripts (device-check.sh, device-node.sh): a log under $OUT, timed
# steps inside one overall budget, and a summary printed on exit whatever failed. Source it after
# setting CHECK_NAME (the log's and summary's name) and CHECK_SECONDS (the budget).
set -u
LOG=/dev/null
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && LOG="$OUT/$CHECK_NAME.log"; fi
: > "$LOG" 2>/dev/null || LOG=/dev/null
START=$(date +%s)
DEADLINE=$((START + CHECK_SECONDS))
declare -a SUMMARY=()

say() { echo "$*" | tee -a "$LOG"; }
note() { SUMMARY+=("$*"); }
finish() {
  say ""
  say "==== $CHECK_NAME summary ($(( $(date +%s) - START )) s) ===="
  for line in ${SUMMARY[@]+"${SUMMARY[@]}"}; do say "$line"; done
  [ "${#SUMMARY[@]}" -eq 0 ] && say "(no step completed)"
}
trap finish EXIT

# step NAME SECONDS CMD...: runs CMD with a time limit (cut to what the budget has left), output
# to the screen (its tail) and the log; sets STEP_RC and STEP_OUT (the output file)
step() {
  local name=$1 limit=$2
  shift 2
  STEP_OUT=$(mktemp)
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt "$limit" ] && limit=$left
  say ""
  if [ "$limit" -lt 5 ]; then
    say "---- $name: skipped, the ${CHECK_SECONDS}-second budget is spent"
    echo "skipped: out of time" > "$STEP_OUT"
    STEP_RC=124
    return
  fi
  say "---- $name (limit ${limit}s): $*"
  timeout --kill-after=5 "$limit" "$@" > "$STEP_OUT" 2>&1
  STEP_RC=$?
  cat "$STEP_OUT" >> "$LOG"
  tail -n 60 "$STEP_OUT"
  if [ "$STEP_RC" -eq 124 ] || [ "$STEP_RC" -eq 137 ]; then say "($name: timed out after ${limit}s)"; fi
}

# cudnn_dir: the folder of the machine's libcudnn.so.9 (or .8) for C3GAN_CUDNN, else nothing:
# PyTorch's pip wheels keep it under nvidia/cudnn/lib, conda's and source builds under torch/lib
# or the loader's cache. LD_LIBRARY_PATH then gets the folder too, for cuDNN 9's sub-libraries.
cudnn_dir() {
  local d
  d=$(python3 -c 'import os, nvidia.cudnn as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null) &&
    ls "$d"/libcudnn.so.* > /dev/null 2>&1 && { echo "$d"; return; }
  d=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) &&
    ls "$d"/libcudnn.so.* > /dev/null 2>&1 && { echo "$d"; return; }
  d=$(ldconfig -p 2>/dev/null | awk '/libcudnn\.so\.[89] /{print $NF; exit}')
  [ -n "$d" ] && dirname "$d"
}
