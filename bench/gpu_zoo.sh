#!/usr/bin/env bash
# Every GPU figure of the model zoo, in three phases (each fits one 10-minute call):
#   bash bench/gpu_zoo.sh bench    GPU benchmarks, then `seed` (tutorial recipe, seed 0)
#                                  trained alone and timed, then the rest of the zoo
#                                  started in the background
#   bash bench/gpu_zoo.sh wait     wait for the zoo (up to WAIT_S seconds)
#   bash bench/gpu_zoo.sh collect  ship checkpoints and copy results to $OUT
# Needs .devdata/cifar10.npz (python -m convattn.data pack ../shared/data/cifar10-jpeg ...).
# EPOCHS_TUTORIAL, EPOCHS_FAST, SUBSET and SEEDS shrink it for a dry run on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/zoo-out}
RUNS=${RUNS:-/tmp/runs}
DATA=${DATA:-/tmp/cifar10-jpeg}
EPOCHS_TUTORIAL=${EPOCHS_TUTORIAL:-100}
EPOCHS_FAST=${EPOCHS_FAST:-80}
SUBSET=${SUBSET:-0}
SEEDS=${SEEDS:-"0 1 2"}
WAIT_S=${WAIT_S:-560}
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS"

train() {  # arch seed preset epochs [extra flags]
  exec $PY -m convattn.train --arch "$1" --seed "$2" --preset "$3" --epochs "$4" \
    --data "$DATA" --train-subset "$SUBSET" --out "$RUNS/$1-s$2.pt" "${@:5}"
}

case "${1:-}" in
bench)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$RUNS/gpu.txt"
  [ -d "$DATA" ] || $PY -m convattn.data unpack .devdata/cifar10.npz "$DATA"
  if [ -z "${SKIP_BENCH:-}" ]; then
    $PY bench/bench_attention.py --batch 256 --dtype fp32 | tee "$RUNS/bench_attention.txt"
    $PY bench/bench_attention.py --batch 256 --dtype bf16 | tee -a "$RUNS/bench_attention.txt"
    $PY bench/bench_row.py --arch seed | tee "$RUNS/bench_row.txt"
    $PY bench/tutorial_loop.py --data "$DATA" --epochs 2 | tee "$RUNS/tutorial_loop.txt"
  fi
  t0=$(date +%s%N)
  # Bounded so that the rest of the zoo still starts in this call; an unfinished run
  # goes on below with --resume.
  timeout "${SEED_TIMEOUT:-420}" bash -c "$(declare -f train); PY=$PY DATA=$DATA \
    SUBSET=$SUBSET RUNS=$RUNS; train seed 0 tutorial $EPOCHS_TUTORIAL" 2>&1 \
    | tee "$RUNS/seed-s0.log"
  echo "wall $(( ($(date +%s%N) - t0) / 1000000 )) ms (process start to exit)" \
    | tee -a "$RUNS/seed-s0.log"
  resume_seed0=""
  grep -q "epoch *$EPOCHS_TUTORIAL/$EPOCHS_TUTORIAL" "$RUNS/seed-s0.log" || resume_seed0="--resume"
  # The rest of the zoo, all at once: small networks leave most of the GPU idle.
  for arch in seed seed-noattn seed-se seed-cbam; do
    for s in $SEEDS; do
      extra=""
      if [ "$arch-$s" = "seed-0" ]; then
        [ -z "$resume_seed0" ] && continue
        extra="--resume"
      fi
      setsid bash -c "$(declare -f train); PY=$PY DATA=$DATA SUBSET=$SUBSET RUNS=$RUNS; \
        train $arch $s tutorial $EPOCHS_TUTORIAL $extra" > "$RUNS/$arch-s$s${extra:+-resumed}.log" 2>&1 \
        < /dev/null &
    done
  done
  for arch in resnet9-attn resnet9; do
    setsid bash -c "$(declare -f train); PY=$PY DATA=$DATA SUBSET=$SUBSET RUNS=$RUNS; \
      train $arch 0 fast $EPOCHS_FAST" > "$RUNS/$arch-s0.log" 2>&1 < /dev/null &
  done
  sleep 5
  ;&
wait)
  # SECONDS counts from this script's start, so a call never outlives WAIT_S.
  while pgrep -f "convattn.train" > /dev/null && [ "$SECONDS" -lt "$WAIT_S" ]; do
    sleep 15
  done
  for f in "$RUNS"/*.log; do echo "== $f"; tail -n 2 "$f"; done
  pgrep -f "convattn.train" > /dev/null && echo "STILL RUNNING" || echo "ALL DONE"
  ;;
collect)
  $PY bench/ship.py "$RUNS" "$RUNS/ship" | tee "$RUNS/ship.txt"
  $PY bench/bench_eval.py "$RUNS"/ship/seed.pt "$RUNS"/ship/resnet9-attn.pt --data "$DATA" \
    | tee "$RUNS/bench_eval.txt"
  cp "$RUNS"/ship/resnet9-attn.pt "$RUNS"/ship/resnet9.pt "$OUT"/ 2>/dev/null
  tar -C "$RUNS/ship" -cf "$OUT/seed-family.tar" --exclude 'resnet9*.pt' .
  tar -C "$RUNS" -cf "$OUT/logs.tar" --exclude ship --exclude '*.pt' .
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 bench|wait|collect" >&2
  exit 2
  ;;
esac
