#!/usr/bin/env bash
# Issue 22 on a lent GPU machine: replay (`simulate --replay`) vs self-play with the static engine, Qwen2.5-0.5B
# and 7B shapes (random weights, benchmarks/random_model.py), one model a GPU, side by side when there are two.
# Usage: DATA=prepared-data-dir bash benchmarks/gpu_replay.sh   (logs in $OUT; results/benchmarks/2026-11-30-h200-replay*.md)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=8
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the host's rule
: "${DATA:?a prepared data dir}"; DATA=$(realpath "$DATA")  # checked here: inside $(...) a miss ends only the subshell
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
nproc
gpus=$(nvidia-smi -L | wc -l)

shape() {  # shape gpu orders...
  local s=$1 gpu=$2 m=/tmp/$1; shift 2
  export CUDA_VISIBLE_DEVICES=$gpu
  python3 benchmarks/random_model.py --shape $s --data "$DATA" --out $m 2>&1 | grep -v "it/s\]"
  python3 -W ignore benchmarks/bench_replay.py --model $m --data "$DATA" --limit 128 --batch-size 128 \
    --dtype bfloat16 --static-cache on --order "$1" 2>&1 | grep -v "Loading weights\|it/s\]"
  if [ $s = qwen2.5-0.5b ]; then  # the command a user runs (its seconds include loading the model and graph capture)
    ( time python3 -m workflows.cli simulate --replay "$DATA" --split test --limit 128 --user base:$m --batch-size 128 \
        --static-cache on --dtype bfloat16 --out /tmp/run-$s ) 2>&1 | grep -v "it/s\]" | tail -4
    python3 -c "import json; i=json.load(open('/tmp/run-$s/run.json')); print('cli replay run.json:', i['generated_tokens'], 'tokens in', i['seconds'], 's;', i['replay']['points'], 'points,', i['replay']['points_cut'], 'cut')"
    python3 benchmarks/check_replay_fit.py $m "$DATA" --limit 128  # the per-message fit = fit_history, every point
  fi
}
O05=${O05:-replay,selfplay,replay-blocks,replay-old,replay,replay-blocks,selfplay}
O7=${O7:-replay,selfplay,replay-blocks,replay,replay-blocks,selfplay,replay-old}
if [ "$gpus" -ge 2 ]; then
  shape qwen2.5-0.5b 0 $O05 > "$OUT/qwen05.log" 2>&1 &
  shape qwen2.5-7b 1 $O7 > "$OUT/qwen7.log" 2>&1
  wait
else
  shape qwen2.5-0.5b 0 $O05 > "$OUT/qwen05.log" 2>&1
  shape qwen2.5-7b 0 $O7 > "$OUT/qwen7.log" 2>&1
fi
cat "$OUT/qwen05.log" "$OUT/qwen7.log"
