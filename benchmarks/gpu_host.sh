#!/usr/bin/env bash
# Issue 25 item 1 on one lent H200: host time a decode step (`chunk_decode.py`): uniforms drawn ahead
# (static-ahead), k steps a CUDA graph (static-chunk) or the step graph replayed k times a sync (static-loop)
# against static-fast (live attention + in-graph wide draw,
# the last session's best), side by side in one process, alternating (7B at 128 live, 0.5B at 32). Usage:
# DATA=prepared-data-dir CHUNK=8 bash benchmarks/gpu_host.sh STAGE...   (tests d05 d7; logs in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=8
DATA=$(realpath "${DATA:?a prepared data dir}")
S=${S:-static-fast,static-ahead,static-chunk,static-loop}
model() { [ -d /tmp/$1 ] || python3 benchmarks/random_model.py --shape $1 --data "$DATA" --out /tmp/$1 2>&1 | grep -v "it/s\]"; }
bench() { python3 -W ignore benchmarks/bench_simulation.py --dtype bfloat16 --naive-conversations 0 --only-best \
  --chunk "${CHUNK:-8}" --schedulers $S,$S ${PROFILE:+--profile} "$@" 2>&1 | grep -v "Loading weights\|it/s\]"; }
for stage in "$@"; do
  echo "=== $stage $(date -u +%T)"
  case $stage in
    tests) python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_chunk_decode.py tests/test_live_attention.py \
             tests/test_static_cache.py tests/test_sampling_wide.py &> "$OUT/tests.log"; tail -15 "$OUT/tests.log" ;;
    d05) model qwen2.5-0.5b; bench --model /tmp/qwen2.5-0.5b --conversations 32 ;;
    d7) model qwen2.5-7b; bench --model /tmp/qwen2.5-7b --conversations 128 ;;
  esac
done 2>&1 | tee -a "$OUT/session.log"
