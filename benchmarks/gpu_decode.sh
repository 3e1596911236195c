#!/usr/bin/env bash
# Issue 25 item 1 on one lent H200: the static engine's decode step against the memory floor, the wide-nucleus
# sampler before (full sort) and now (`sample_wide`), side by side in one process. Random-weight Qwen2.5 shapes
# built there (tokenizer trained on the scenarios' text: no data needed). Usage: bash benchmarks/gpu_decode.sh STAGE...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
M05=/tmp/qwen05-shape M7=/tmp/qwen7b-shape
bench() { python3 -W ignore benchmarks/bench_simulation.py --dtype bfloat16 --naive-conversations 0 --only-best "$@" 2>&1 \
  | grep -v "Loading weights\|it/s\]"; }
for stage in "$@"; do
  echo "=== $stage $(date -u +%T)"
  case $stage in
    models) [ -d $M05 ] || python3 benchmarks/random_model.py --shape qwen2.5-0.5b --out $M05
            [ -d $M7 ] || python3 benchmarks/random_model.py --shape qwen2.5-7b --out $M7 ;;
    sampling) python3 benchmarks/bench_sampling.py ;;
    d7) bench --model $M7 --conversations 128 --schedulers static-sort,static-compiled,static-sort,static-compiled ${ARGS7:-} ;;
    d05) bench --model $M05 --conversations 32,128 --schedulers static-sort,static-compiled,static-sort,static-compiled ;;
    tests) python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_static_cache.py tests/test_sampling_wide.py 2>&1 | tail -15 ;;
  esac
done 2>&1 | tee -a "$OUT/session.log"
