#!/usr/bin/env bash
# The GPU speed figures (attention kernels, trainer against the tutorial's loop, the app's
# compute, airbench beside us) in one device call of under 10 minutes:
#   bash bench/gpu_speed.sh
# Needs .devdata/cifar10.npz (python -m convattn.data pack ../shared/data/cifar10-jpeg
# .devdata/cifar10.npz) and, for airbench, its wheel installed (pip install airbench==0.1.8).
# Steps run in order of importance; each is cut at its own limit and at DEADLINE_S from the
# start, so the log always comes back. Everything goes to $OUT/gpu_speed.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-speed}
PACK=${PACK:-.devdata/cifar10.npz}
FOLDER=/tmp/cifar10-jpeg
RUNS=/tmp/gpu-speed-runs
DEADLINE_S=${DEADLINE_S:-540}
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS"

step() {  # limit command...: run it, cut at min(limit, time left); print rc and seconds
  local limit=$1; shift
  local left=$((DEADLINE_S - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then echo "=== skipped (deadline): $*"; return; fi
  echo "=== $* (limit ${limit} s, at ${SECONDS} s)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== rc $? after $((SECONDS - t0)) s"
}

train() {  # name epochs flags...: a short timed run of convattn.train
  local name=$1 epochs=$2; shift 2
  step 150 $PY -m convattn.train --data "$PACK" --epochs "$epochs" \
    --out "$RUNS/$name.pt" "$@"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc
  # Decoding the JPEGs is CPU work: done once in the background (cached), and the folder
  # that the tutorial's ImageFolder loop reads is written meanwhile.
  $PY -c "from convattn.data import load_split as l; l('$PACK', 'train'); l('$PACK', 'test')" \
    > "$RUNS/decode.log" 2>&1 &
  $PY -m convattn.data unpack "$PACK" "$FOLDER" > "$RUNS/unpack.log" 2>&1 &

  echo "### 1. fused vs explicit attention, batch 256, 64x32x32"
  for heads in 1 4; do
    for dtype in fp32 bf16; do
      step 45 $PY bench/bench_attention.py --batch 256 --dtype $dtype --heads $heads
    done
  done

  echo "### 4a. the app's compute on the GPU: one row, attributions"
  step 40 $PY bench/bench_row.py --arch seed --device cuda
  step 90 $PY -m bench.bench_app --checkpoint checkpoints/seed.pt --device cuda --no-app \
    --clicks 200 --repeats 5
  wait  # decoding and the folder, before anything reads the data

  echo "### 2. the trainer against the tutorial's loop (seed, tutorial recipe)"
  step 100 $PY bench/tutorial_loop.py --data "$FOLDER" --epochs 2
  train seed-eager 5 --arch seed --preset tutorial
  train seed-graphs 6 --arch seed --preset tutorial --compile --compile-mode reduce-overhead

  echo "### 4b. evaluation of the 10,000 test images"
  step 90 $PY bench/bench_eval.py checkpoints/seed.pt checkpoints/resnet9-attn.pt \
    --data "$PACK" --device cuda

  echo "### 3. airbench94 beside our fastest recipe (resnet9-attn, fast, eager)"
  train resnet9-attn-fast 4 --arch resnet9-attn --preset fast
  step 120 $PY bench/bench_airbench.py --data "$PACK" --runs 5

  echo "### 4c. faithfulness: 1,000 images x (IG, Grad-CAM, attention, random)"
  step 150 $PY -m bench.bench_faithfulness --checkpoints seed --images 64 --full \
    --device cuda --methods integrated_gradients,gradcam,attention,random

  echo "### 2b. compile's default mode, if time is left"
  train seed-compiled 6 --arch seed --preset tutorial --compile
  echo "### done at ${SECONDS} s"
} 2>&1 | tee "$OUT/gpu_speed.log"
