#!/usr/bin/env bash
# Issue 25 item 1 on one lent H200: rows wider than the head drawn by the split Triton top-p kernels, compacted
# (`userlm/backends/triton_top_p.py`, static-loop-triton-split) against the previous best of each shape: at 0.5B/32
# the split kernels without compaction (static-loop-triton-split-full), at 7B/128 the one-program-a-row kernel
# (static-loop-triton-row); S05= / S7= override (e.g. static-loop,static-loop-triton: against torch's compiled search
# + cumsum); side by side in one process, alternating, the second (warm) run of each counting: the list runs twice,
# so a scheduler named twice (S7=X,Y,X,Y) gets three warm runs. MICRO=: bench_top_p.py's options (e.g. --softmax).
# Usage: DATA=prepared-data-dir bash benchmarks/gpu_topp.sh STAGE...   (tests micro d05 d7; logs in $OUT); or TOK=dir
# instead of DATA: a tokenizer random_model.py saved before (the prepared data is too large to carry)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=8
# a missing DATA inside $(...) only ended the subshell: the model's tokenizer was then trained on the scenarios' text
[ -n "${TOK:-}${DATA:-}" ] || { echo "gpu_topp.sh: set DATA (a prepared data dir) or TOK (a saved tokenizer)" >&2; exit 2; }
SOURCE=$([ -n "${TOK:-}" ] && echo "--tokenizer $(realpath "$TOK")" || echo "--data $(realpath "$DATA")")
S05=${S05:-static-loop-triton-split-full,static-loop-triton-split}
S7=${S7:-static-loop-triton-row,static-loop-triton-split}
model() { [ -d /tmp/$1 ] || python3 benchmarks/random_model.py --shape $1 $SOURCE --out /tmp/$1 2>&1 | grep -v "it/s\]"; }
bench() { python3 -W ignore benchmarks/bench_simulation.py --dtype bfloat16 --naive-conversations 0 --only-best \
  --chunk "${CHUNK:-8}" --schedulers $S,$S ${PROFILE:+--profile --profile-top 40} ${PHASES:+--profile-phases "$PHASES"} ${SYNC:+--sync-debug} "$@" 2>&1 | grep -v "Loading weights\|it/s\]"; }
for stage in "$@"; do
  echo "=== $stage $(date -u +%T)"
  case $stage in
    tests) python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
           python3 -m pytest -q -p no:cacheprovider --tb=short ${TESTS:-tests/test_triton_top_p.py} &> "$OUT/tests.log"
           tail -15 "$OUT/tests.log" ;;
    micro) python3 -W ignore benchmarks/bench_top_p.py ${MICRO:-} ;;
    d05) model qwen2.5-0.5b; S=$S05 bench --model /tmp/qwen2.5-0.5b --conversations 32 ;;
    d7) model qwen2.5-7b; S=$S7 bench --model /tmp/qwen2.5-7b --conversations 128 ;;
  esac
done 2>&1 | tee -a "$OUT/session.log"
