#!/usr/bin/env bash
# Issue 25 item 1 on one lent H200: decode attention over each row's live positions (`live_attention.py`) against
# the compiled engine, side by side in one process (7B at 128 live, 0.5B at 32), then replay vs self-play with it
# on (issue 22). Random-weight Qwen2.5 shapes (tokenizer trained on DATA's turns). Usage:
# DATA=prepared-data-dir bash benchmarks/gpu_live.sh STAGE...   (tests d7 d05 r05 r7; logs in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=8
: "${DATA:?a prepared data dir}"; DATA=$(realpath "$DATA")  # checked here: inside $(...) a miss ends only the subshell
model() { [ -d /tmp/$1 ] || python3 benchmarks/random_model.py --shape $1 --data "$DATA" --out /tmp/$1 2>&1 | grep -v "it/s\]"; }
bench() { python3 -W ignore benchmarks/bench_simulation.py --dtype bfloat16 --naive-conversations 0 --only-best "$@" 2>&1 \
  | grep -v "Loading weights\|it/s\]"; }
replay() { python3 -W ignore benchmarks/bench_replay.py --model /tmp/$1 --data "$DATA" --limit 128 --batch-size 128 \
  --dtype bfloat16 --static-cache on --live-attention --order ${ORDER:-replay,selfplay,replay,selfplay} 2>&1 \
  | grep -v "Loading weights\|it/s\]"; }
for stage in "$@"; do
  echo "=== $stage $(date -u +%T)"
  case $stage in
    tests) python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_live_attention.py tests/test_static_cache.py tests/test_sampling_wide.py 2>&1 | tail -15 ;;
    d7) model qwen2.5-7b; bench --model /tmp/qwen2.5-7b --conversations 128 \
          --schedulers static-compiled,static-live,static-fast,static-compiled,static-live,static-fast ${ARGS7:-} ;;
    d05) model qwen2.5-0.5b; bench --model /tmp/qwen2.5-0.5b --conversations 32 \
          --schedulers static-compiled,static-live,static-fast,static-compiled,static-live,static-fast ;;
    r05) model qwen2.5-0.5b; replay qwen2.5-0.5b ;;
    r7) model qwen2.5-7b; replay qwen2.5-7b ;;
  esac
done 2>&1 | tee -a "$OUT/session.log"
