#!/usr/bin/env bash
# The GPU check: what a lent GPU machine runs in one go, about 10 minutes, figures under $OUT.
#
#   OUT=/tmp/gpu GENBENCH_DATA=../shared/data bash benchmarks/gpu_check.sh
#
# 1. the device-placement and training-loop tests (they pass on any machine; here with CUDA present)
# 2. the smoke suite, then the mnist suite's smoke budget, trained and evaluated on the GPU: a few
#    hundred steps of every model family through the CLI, as a user runs them
# 3. benchmarks/train_loop.py on the GPU (train() vs a plain loop, images/s) and on one CPU thread
# 4. benchmarks/ensemble.py on the GPU: 5 seeds as one vectorised ensemble against one run alone
# Each step has its own time limit, so one that hangs costs its limit and the others still run.
# DEVICE=cpu runs the same steps without a GPU (to check the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-$(mktemp -d)}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python}"
export GENBENCH_DATA="${GENBENCH_DATA:-../shared/data}"
mkdir -p "$OUT"
failed=0

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, its output in $OUT/NAME.log
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - start)) s (log $OUT/$name.log)" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || failed=1
}

{ echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"; nvidia-smi -L 2>/dev/null || true; } \
  | tee "$OUT/summary.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  | tee -a "$OUT/summary.txt"

step tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/zoo/test_device_placement.py tests/train/test_train.py
step smoke-suite 60 "$PY" -m genbench run --suite smoke --budget smoke --device "$DEVICE" --no-progress \
  --db "$OUT/db.sqlite" --runs-dir "$OUT/runs" --leaderboards "$OUT/leaderboards"
step mnist-smoke 240 "$PY" -m genbench run --suite mnist --budget smoke --device "$DEVICE" --no-progress \
  --db "$OUT/db.sqlite" --runs-dir "$OUT/runs" --leaderboards "$OUT/leaderboards"
step train-loop-device 90 "$PY" benchmarks/train_loop.py --device "$DEVICE" --threads 1 --batches 20 100 \
  --steps 400 --repeats 3
step train-loop-cpu 60 "$PY" benchmarks/train_loop.py --device cpu --threads 1 --batches 20 100 \
  --steps 200 --repeats 3
step ensemble-device 90 "$PY" benchmarks/ensemble.py --device "$DEVICE" --threads 1 --seeds 5 --steps 300

echo "figures: $OUT/summary.txt, the leaderboards in $OUT/leaderboards, the logs beside them"
exit $failed
