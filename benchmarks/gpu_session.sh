#!/usr/bin/env bash
# The GPU numbers in results/benchmarks/, on a lent machine that cannot download: wheels for what it lacks
# travel in .wheels/ and the OASST sample in .gpu/; a model with Qwen2.5-0.5B's shapes is created there.
# Usage: bash benchmarks/gpu_session.sh STAGE...   (logs go to $OUT)
# stages: setup sim train ddp dp-sim; issue 16: setup7b sched sched7b train7b; its follow-ups: gsample gsample7b,
# compile compile7b gpu-tests
# .wheels/ (trl, datasets, dill, multiprocess for the GPU's Python, bitsandbytes: `pip download --no-deps`) and
# .gpu/ are git-ignored, so name both in the device tool's `carry`. .gpu/sharegpt (train7b) is 1,200 train +
# 64 validation lines drawn with random.seed(0) from `userlm data prepare --source sharegpt`, plus its manifest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the host's rule
MODEL=/tmp/qwen-shape DATA=/tmp/gpu-data MODEL7B=/tmp/qwen7b-shape
userlm() { python3 -m workflows.cli "$@"; }
launch2() { python3 -m accelerate.commands.launch --multi_gpu --num_processes 2 --mixed_precision bf16 "$@"; }

for stage in "$@"; do
  echo "=== $stage $(date -u +%T)"
  case $stage in
    setup)
      [ -d /tmp/site/bitsandbytes ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .wheels/*.whl
      nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      python3 -c "import torch, transformers, peft, trl, bitsandbytes, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'bitsandbytes', bitsandbytes.__version__, 'accelerate', accelerate.__version__)"
      [ -d $DATA ] || userlm data prepare --source .gpu/oasst2_sample.trees.jsonl --out $DATA
      [ -d $MODEL ] || python3 benchmarks/random_model.py --shape qwen2.5-0.5b --data $DATA --out $MODEL ;;
    setup7b)
      [ -d $MODEL7B ] || python3 benchmarks/random_model.py --shape qwen2.5-7b --data $DATA --out $MODEL7B
      [ -d /tmp/sharegpt ] || cp -r .gpu/sharegpt /tmp/sharegpt ;;
    sched|sched7b)  # issue 16: the dynamic scheduler vs the static-slot/CUDA-graph one, bf16 and NF4, 32 and 128 live
      m=$MODEL; [ $stage = sched7b ] && m=$MODEL7B
      for q in ${QUANTS:-none nf4}; do
        python3 -W ignore benchmarks/bench_simulation.py --model $m --dtype bfloat16 --quantization $q \
          --conversations 32,128 --naive-conversations 0 --only-best --schedulers dynamic,static 2>&1 \
          | grep -v "Loading weights\|it/s\]" | tee -a "$OUT/$stage.log"
      done ;;
    gsample|gsample7b)  # issue 16 follow-up: the static engine sampling on the host (before) vs inside its graph
      m=$MODEL; [ $stage = gsample7b ] && m=$MODEL7B
      for q in ${QUANTS:-none}; do
        python3 -W ignore benchmarks/bench_simulation.py --model $m --dtype bfloat16 --quantization $q \
          --conversations 32,128 --naive-conversations 0 --only-best --schedulers static-host,static,static-host,static \
          --verify-sampling ${SIMARGS:-} 2>&1 | grep -v "Loading weights\|it/s\]" | tee -a "$OUT/$stage.log"
      done ;;
    compile|compile7b)  # issue 16, last step: the decode graph with torch.compile-fused norms and rotary, alternating
      m=$MODEL; [ $stage = compile7b ] && m=$MODEL7B
      for q in ${QUANTS:-none}; do
        python3 -W ignore benchmarks/bench_simulation.py --model $m --dtype bfloat16 --quantization $q --conversations 32,128 \
          --naive-conversations 0 --only-best --schedulers static,static-compiled,static,static-compiled ${SIMARGS:-} 2>&1 \
          | grep -v "Loading weights\|it/s\]" | tee -a "$OUT/$stage.log"
      done ;;
    gpu-tests)  # the static engine's tests on CUDA (graphs on), then on this machine's CPU
      python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_static_cache.py 2>&1 | grep -v DEBUG | tail -40 | tee -a "$OUT/$stage.log"
      CUDA_VISIBLE_DEVICES= python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_static_cache.py 2>&1 | grep -v DEBUG | tail -40 | tee -a "$OUT/$stage.log" ;;
    peft-sim)  # the GPU default (static slots, graphs, compiled decode) with a peft adapter on an NF4 base
      rm -rf /tmp/adapter-peft /tmp/run-peft
      userlm train --config configs/gpu-qlora-smoke.yaml --set base_model=$MODEL --set data_dir=$DATA \
        --set output_dir=/tmp/adapter-peft --set quantization=nf4 --set max_steps=2 --set eval_steps=1000 > "$OUT/peft-train.log" 2>&1 \
        || tail -8 "$OUT/peft-train.log"
      userlm simulate --scenarios scenarios/smoke --user /tmp/adapter-peft --assistant $MODEL --samples 4 --max-turns 2 \
        --set quantization=nf4 --out /tmp/run-peft 2>&1 | grep -v "it/s\]" | tail -12 | tee "$OUT/$stage.log"
      python3 -c "import json; rows=[json.loads(l) for l in open('/tmp/run-peft/transcripts.jsonl')]; print(len(rows), 'conversations,', sum(len(r['turns']) for r in rows), 'turns')" | tee -a "$OUT/$stage.log"
      python3 - <<'PY' 2>&1 | grep -v "it/s\]" | tail -4 | tee -a "$OUT/$stage.log"
from userlm.backends import GenerationRequest, get_backend
from userlm.backends import Sampling
b = get_backend("hf", "/tmp/adapter-peft", quantization="nf4", max_batch=8)
out = b.generate([GenerationRequest([{"role": "user", "content": f"Hi {i}"}], Sampling(0.9, 0.9, 24), seed=i) for i in range(8)])
e = b.slots
print("adapter on NF4:", sum(g.tokens for g in out), "tokens; graphs", e.use_graphs, "compiled", e.compile_decode,
      "fused pieces", len(e.fused or []), "graph error", e.graph_error, "graphs captured", b.counts["graphs"])
PY
      ;;
    gsample-alone)  # sampling alone at the decode step's shapes
      python3 benchmarks/bench_sampling.py 2>&1 | tee -a "$OUT/$stage.log" ;;
    train7b)  # issue 16: the reference config at its true size (7B shapes), ShareGPT's length mix, padded vs padding-free
      for b in padded padding_free; do
        rm -rf /tmp/adapter7b-$b
        userlm train --config configs/qwen2.5-7b-qlora.yaml --set base_model=$MODEL7B --set data_dir=/tmp/sharegpt \
          --set output_dir=/tmp/adapter7b-$b --set batching=$b --set max_steps=${STEPS7B:-4} --set eval_steps=100000 \
          --set save_steps=100000 --set logging_steps=1 --set report_to=none > "$OUT/train7b-$b.log" 2>&1 \
          || grep -v "it/s\]\|s/it\]\|examples/s" "$OUT/train7b-$b.log" | tail -8
        python3 -c "import json,sys; m=json.load(open('/tmp/adapter7b-$b/manifest.json')); print('7b $b', {k: m.get(k) for k in ('global_step','train_runtime_s','train_tokens','train_tokens_per_second','peak_gpu_memory_gb','model_memory_gb','final_train_loss')})"
      done 2>&1 | tee "$OUT/train7b.log" ;;
    sim)  # batched loop vs naive in bf16 (with the ablations), then 4-bit; printed straight to the log
      python3 -W ignore benchmarks/bench_simulation.py --model $MODEL --dtype bfloat16 --conversations 32 --naive-conversations 2 >> "$OUT/sim.log" 2>&1
      python3 -W ignore benchmarks/bench_simulation.py --model $MODEL --dtype bfloat16 --quantization nf4 --conversations 32 --naive-conversations 1 --only-best >> "$OUT/sim.log" 2>&1 ;;
    train)  # bf16 LoRA vs 4-bit QLoRA, padded vs padding-free, one GPU
      for q in ${QUANTS:-none nf4}; do for b in padded padding_free; do
        rm -rf /tmp/adapter-$q-$b
        userlm train --config configs/gpu-qlora-smoke.yaml --set base_model=$MODEL --set data_dir=$DATA \
          --set output_dir=/tmp/adapter-$q-$b --set quantization=$q --set batching=$b --set max_steps=30 --set eval_steps=1000 > "$OUT/train-$q-$b.log" 2>&1 \
          || grep -v "it/s\]\|s/it\]\|examples/s" "$OUT/train-$q-$b.log" | tail -8
        python3 -c "import json,sys; m=json.load(open('/tmp/adapter-$q-$b/manifest.json')); print('$q $b', {k: m[k] for k in ('processes','global_step','train_runtime_s','train_tokens','train_tokens_per_second','peak_gpu_memory_gb','model_memory_gb','final_train_loss')})"
      done; done 2>&1 | tee "$OUT/train.log" ;;
    ddp)  # the same QLoRA job on both GPUs through accelerate + TRL (DDP)
      rm -rf /tmp/adapter-ddp
      launch2 -m workflows.cli train --config configs/gpu-qlora-smoke.yaml --set base_model=$MODEL --set data_dir=$DATA \
        --set output_dir=/tmp/adapter-ddp --set quantization=nf4 --set batching=padded --set max_steps=30 --set eval_steps=1000 > "$OUT/ddp-train.log" 2>&1
      tail -3 "$OUT/ddp-train.log"
      python3 -c "import json; m=json.load(open('/tmp/adapter-ddp/manifest.json')); print('ddp nf4 padded', {k: m[k] for k in ('processes','global_step','train_runtime_s','train_tokens','train_tokens_per_second','peak_gpu_memory_gb','final_train_loss')})" | tee -a "$OUT/train.log" ;;
    dp-sim)  # data-parallel simulation: 1 process vs 2 (one replica per GPU), then an interrupted run resumed
      args=(--scenarios scenarios/everyday --samples 8 --max-turns 3 --user base:$MODEL --assistant $MODEL --set dtype=bfloat16 --set batch_size=64)
      rm -rf /tmp/sim-1 /tmp/sim-2
      ( time userlm simulate "${args[@]}" --out /tmp/sim-1 ) 2>&1 | grep -E "real|Error" | sed 's/^/1 process: /'
      ( time launch2 -m workflows.cli simulate "${args[@]}" --out /tmp/sim-2 ) 2>&1 | grep -E "real|Error" | sed 's/^/2 processes: /'
      python3 - <<'EOF'
import json
one = [json.loads(l) for l in open("/tmp/sim-1/transcripts.jsonl")]
two = [json.loads(l) for l in open("/tmp/sim-2/transcripts.jsonl")]
key = lambda r: (r["scenario_id"], r["sample"])
print("conversations", len(one), len(two), "same order:", [key(r) for r in one] == [key(r) for r in two])
same = sum(a["turns"] == b["turns"] for a, b in zip(one, two))
print(f"identical transcripts (bf16 GPU numerics differ with batch make-up): {same}/{len(one)}")
print("processes", json.load(open("/tmp/sim-2/run.json"))["processes"])
EOF
      head -n 40 /tmp/sim-2/transcripts.jsonl > /tmp/keep && mv /tmp/keep /tmp/sim-2/transcripts.jsonl  # "crash"
      launch2 -m workflows.cli simulate "${args[@]}" --out /tmp/sim-2 --resume > "$OUT/dp-resume.log" 2>&1; echo "resume exit $?"
      python3 -c "import json; r=[json.loads(l) for l in open('/tmp/sim-2/transcripts.jsonl')]; k={(x['scenario_id'],x['sample']) for x in r}; print('after resume', len(r), 'records,', len(k), 'distinct')"
      ;;
  esac
done 2>&1 | tee -a "$OUT/session.log"
