#!/usr/bin/env bash
# Issue 25 item 3 on a lent 2-GPU machine: `simulate --replay` of LIMIT conversations at the Qwen2.5-7B shape
# (random weights, benchmarks/random_model.py) on one GPU, then on two under `accelerate launch` (one replica a
# GPU, every second conversation each, process 0 merges in plan order); the ratio of their generation seconds
# (after loading the model) and whether the records come in the same order.
# Usage: DATA=prepared-data-dir [SPLIT=train LIMIT=1024 TURNS=3 TOKDATA=dir] bash benchmarks/gpu_replay_dp.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=8
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the host's rule
: "${DATA:?a prepared data dir}"; DATA=$(realpath "$DATA"); TOKDATA=$(realpath "${TOKDATA:-$DATA}")  # checked here: in $(...) a miss ends only the subshell
SPLIT=${SPLIT:-train}; LIMIT=${LIMIT:-1024}; TURNS=${TURNS:-3}; m=/tmp/qwen2.5-7b
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -f $m/config.json ] || python3 benchmarks/random_model.py --shape qwen2.5-7b --data "$TOKDATA" --out $m 2>&1 | grep -v "it/s\]"
args="--replay $DATA --split $SPLIT --limit $LIMIT --max-turns $TURNS --user base:$m --batch-size 128 --static-cache on --dtype bfloat16"
rm -rf /tmp/dp1 /tmp/dp2
( time CUDA_VISIBLE_DEVICES=0 python3 -W ignore -m workflows.cli simulate $args --out /tmp/dp1 ) 2>&1 | grep "after loading\|real\|rror"
( time accelerate launch --multi_gpu --num_processes 2 -m workflows.cli simulate $args --out /tmp/dp2 ) 2>&1 \
  | grep "after loading\|real\|rror"
python3 - <<'PY'
import json
one, two = ([json.loads(line) for line in open(f"/tmp/{d}/transcripts.jsonl")] for d in ("dp1", "dp2"))
key = lambda r: (r["sample"], r["conversation_id"], r["seed"], [p["index"] for p in r["points"]])
same = sum(a["generated"] == b["generated"] for x, y in zip(one, two) for a, b in zip(x["points"], y["points"]))
print(f"records {len(one)} / {len(two)}; same order and points: {[key(r) for r in one] == [key(r) for r in two]}; "
      f"identical generated turns {same} of {sum(len(r['points']) for r in one)}")
for d in ("dp1", "dp2"):
    i = json.load(open(f"/tmp/{d}/run.json"))
    print(d, i["processes"], "processes;", i.get("generated_tokens") or i.get("generated_tokens_process_0"),
          "tokens (process 0's under a launch);", i["seconds"], "s in run.json (model loading included)")
PY
