#!/usr/bin/env bash
# The exact commands behind results/h100/: ./results/h100/run.sh STAGE [OUTDIR], from the repository root,
# on a machine with one CUDA GPU. Each stage fits one 10-minute call of the lent GPU machine.
#   checks  the test suite on the GPU machine, infer.py per backend and precision, CUDA training paths
#           (fp32 and --amp, torchrun with NCCL, resume after a kill), the peak probe
#   sweep   ./run_inference.sh over the 14 models with eager, cudagraph and compile (fp16, batch 1024,
#           short trials); resumes a CSV already in OUTDIR
#   modes   util/benchmark_backends.py: eager NCHW / channels-last, cudagraph, the torch.compile modes
#   train   training step ceiling (step_rate.py), then the synthetic game stand-in at f=1 and f=4,
#           side by side, for a fixed number of seconds each
set -u
stage=${1:?usage: run.sh checks|sweep|train [OUTDIR]}
out=${2:-${OUT:-results/h100/out}}
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
GAME=synthetic-sot/coin_count-digits_3_4-v2
NOSCOPE=synthetic-noscope-coral
log() { echo "== $(date +%T) $*" | tee -a "$out/stages.log"; }

case $stage in
checks)
  { nvidia-smi; python3 -c "import torch, torchvision, onnxruntime as o; print(torch.__version__, torchvision.__version__, o.__version__, o.get_available_providers())"; lscpu | head -20; } > "$out/env.txt" 2>&1
  log "test suite (8 workers) in the background"
  (timeout 400 python3 -m pytest -q -n 8 -p no:cacheprovider tests/ > "$out/pytest.log" 2>&1; echo "pytest rc=$?" >> "$out/pytest.log") &
  tests=$!
  log "peak"; python3 util/peak.py --out "$out/peak.json" > /dev/null 2>> "$out/checks.log"
  log "infer.py per backend and precision"
  for p in fp32 fp16 bf16; do for f in 1 4; do for b in eager compile; do
    python3 infer.py lol/goldnumber-int --fold $f --backend $b --precision $p --warmup 10 --iters 200 >> "$out/checks.log" 2>&1 || echo "FAILED infer $b $p f=$f" >> "$out/checks.log"
  done; done; done
  for b in onnxruntime tensorrt; do python3 infer.py lol/goldnumber-int --backend $b >> "$out/checks.log" 2>&1; echo "$b exit $?" >> "$out/checks.log"; done
  log "training: game and NoScope stand-ins, f=1 and f=4, fp32 and --amp, 2 epochs"
  for amp in "" --amp; do
    python3 train.py "$work/runs$amp" --datasets $GAME $NOSCOPE --folds 1 4 --epochs 2 --data_root "$work/data_root" --data_dir "$work/data" $amp >> "$out/train_checks.log" 2>&1 || echo "FAILED train $amp" >> "$out/train_checks.log"
    cp "$work/runs$amp/summary.csv" "$out/train_summary${amp:-_fp32}.csv" 2>/dev/null
    for f in 1 4; do
      python3 docs/examples/cifar_standin.py "$work/data" --fold $f --epochs 1 --batch_size 128 --savedir "$work/c100_$f$amp" $amp >> "$out/train_checks.log" 2>&1 || echo "FAILED cifar100 f=$f $amp" >> "$out/train_checks.log"
    done
  done
  log "torchrun with NCCL"
  python3 -m torch.distributed.run --standalone --nproc_per_node 1 fold_trainer.py --dataset $GAME --fold 4 --epochs 2 --data_root "$work/data_root" --savedir "$work/ddp" >> "$out/train_checks.log" 2>&1 || echo "FAILED torchrun" >> "$out/train_checks.log"
  log "resume after a kill"
  python3 fold_trainer.py --dataset $GAME --fold 4 --epochs 6 --data_root "$work/data_root" --savedir "$work/kill" > /dev/null 2>&1 &
  pid=$!
  while [ "$(cat "$work/kill/stats/train_loss.txt" 2>/dev/null | wc -l)" -lt 2 ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done
  kill -9 $pid; wait $pid 2>/dev/null
  echo "killed after $(wc -l < "$work/kill/stats/train_loss.txt") epochs" >> "$out/train_checks.log"
  python3 fold_trainer.py --dataset $GAME --fold 4 --epochs 6 --data_root "$work/data_root" --savedir "$work/kill" --continue_from_file "$work/kill/current.pth" >> "$out/train_checks.log" 2>&1 || echo "FAILED resume" >> "$out/train_checks.log"
  echo "after resume: $(wc -l < "$work/kill/stats/train_loss.txt") epoch lines" >> "$out/train_checks.log"
  log "waiting for the test suite"; wait $tests; tail -3 "$out/pytest.log"
  grep -h "FAILED\|exit\|killed\|after resume\|Error" "$out/checks.log" "$out/train_checks.log" | head -40
  ;;
modes)
  log "eager, cudagraph and the torch.compile modes side by side"
  for config in ${MODE_CONFIGS:-sot/timer3:1 noscope-coral:4}; do
    t=${config%:*} f=${config#*:}
    timeout ${MODE_SECONDS:-80} python3 util/benchmark_backends.py --tasks $t --folds $f >> "$out/backends.md" 2>> "$out/modes.log" || echo "benchmark $t f=$f stopped: exit $?" >> "$out/backends.md"
  done
  cat "$out/backends.md"
  ;;
sweep)
  # Trials shortened to fit one call: 3 trials of at least 200 timed batches after 10 warm-up batches.
  timing="--trials 3 --warmup 10 --iters 200"
  log "sweep eager"
  ./run_inference.sh "$out/h100.csv" --backend eager $timing 2> "$out/sweep.log" | tail -1
  log "sweep cudagraph"
  ./run_inference.sh "$out/h100.csv" --backend cudagraph $timing 2>> "$out/sweep.log" | tail -1
  log "sweep compile (reduce-overhead)"
  timeout ${COMPILE_SECONDS:-300} ./run_inference.sh "$out/h100.csv" --backend compile $timing 2>> "$out/sweep.log" | tail -1
  log "report"
  python3 util/inference_report.py "$out/h100.csv" --out "$out" >> "$out/sweep.log" 2>&1
  cp "$out/h100.csv" "$out/h100.csv.bak"
  grep -h "error\|skipping\|Traceback" "$out/sweep.log" | head -20
  ;;
train)
  seconds=${SECONDS_EACH:-360}
  log "step rate with resident data (the ceiling without a loader; util/step_rate.py)"
  python3 util/step_rate.py sot/coin_count-digits_3_4-v2 --device cuda >> "$out/step_rate.txt" 2>&1
  python3 util/step_rate.py sot/coin_count-digits_3_4-v2 --device cpu >> "$out/step_rate.txt" 2>&1
  log "game stand-in data"
  python3 -c "from util.train.sweep import Options, prepare_synthetic; prepare_synthetic('$GAME', Options(data_dir='$work/data', data_root='$work/data_root'))"
  log "game stand-in at f=1 and f=4, paper recipe, side by side, ${seconds}s each"
  for f in 1 4; do
    timeout $seconds python3 fold_trainer.py --dataset $GAME --fold $f --epochs ${EPOCHS:-1500} --data_root "$work/data_root" \
      --savedir "$work/game_f$f" > "$out/train_f$f.log" 2>&1 &
  done
  wait
  for f in 1 4; do python3 - "$work/game_f$f" $f >> "$out/accuracy.txt" <<'PY'
import sys
from pathlib import Path
run, fold = Path(sys.argv[1]), sys.argv[2]
val = [float(x) for x in (run / "stats/val_top1.txt").read_text().split()]
test = [float(x) for x in (run / "stats/test_top1.txt").read_text().split()]
last = len(val) - 10  # best of the last 10 epochs: every class active by then
best = max(range(max(last, 0), len(val)), key=val.__getitem__)
print(f"f={fold}: {len(val)} epochs; last-10-epoch best val top-1 {val[best]:.4f} at epoch {best + 1}, "
      f"test top-1 there {test[best]:.4f}; final epoch val {val[-1]:.4f} test {test[-1]:.4f}")
PY
  done
  cat "$out/step_rate.txt" "$out/accuracy.txt"
  ;;
*) echo "unknown stage $stage: checks, sweep or train" >&2; exit 2 ;;
esac
log "done"
