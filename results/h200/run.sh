#!/usr/bin/env bash
# The exact commands behind results/h200/: ./results/h200/run.sh [OUTDIR], from the repository root, on a machine
# with one CUDA GPU; sized for one call of about 7 minutes of the lent GPU machine.
#   1. the training step's ceiling on resident data (util/step_rate.py), fp32 NCHW / fp32 channels-last / bf16
#      channels-last, at each recipe's batch: 32 images at f=1, 128 (32 folded inputs) at f=4
#   2. the trainer on CUDA (the game and NoScope stand-ins): f=1 (fp32, the paper's protocol) and the f=4 students
#      of --recipe distill in the default precision (bf16 autocast), --amp fp32, --nchw, --amp fp16, --init teacher;
#      result.json's images/s, precision and test top-1 per run (train_cuda.md)
#   3. the quick test tier and the demo, side by side (their timings are not compared with anything)
#   latency (only when STAGES names it: STAGES=latency ./results/h200/run.sh OUTDIR, one call of about 7 minutes):
#      the throughput-latency curves (./run_inference.sh --curve) of two NoScope and two game CNNs at f = 1..4,
#      cudagraph, fp16, 3 interleaved trials of at least 50 timed batches (or 1 s), and their report (latency.md)
# STAGES: which of "step train tests latency" to run (default "step train tests", as this file first ran)
set -u
STAGES=${STAGES:-step train tests}
stage() { [[ " $STAGES " == *" $1 "* ]]; }
out=${1:-${OUT:-results/h200/out}}
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
EPOCHS=${EPOCHS:-6}
GAME=synthetic-sot/coin_count-digits_3_4-v2
NOSCOPE=synthetic-noscope-coral
data=(--data_root "$work/data_root" --data_dir "$work/data")
log() { echo "== $(date +%T) $*" | tee -a "$out/stages.log"; }

{ nvidia-smi; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"; lscpu | head -20; } > "$out/env.txt" 2>&1

if stage latency; then
  log "latency curves: cudagraph, fp16"
  timeout 400 ./run_inference.sh "$out/latency.csv" --curve --models noscope_coral noscope_taipei lol/goldnumber-int \
    sot/timer3 --backend cudagraph --precision fp16 --trials 3 --latency_batches 50 --latency_seconds 1 --no_peak \
    > "$out/latency.log" 2>&1 || echo "latency sweep rc=$?" >> "$out/latency.log"
  python3 util/inference_report.py "$out/latency.csv" --out "$out/latency-report" >> "$out/latency.log" 2>&1
  tail -5 "$out/latency.log"; sed -n '/^## /,$p' "$out/latency-report/report.md" | head -60
fi
stage step || stage train || stage tests || { log "done"; exit 0; }

log "step rate on resident data"
python3 util/step_rate.py sot/coin_count-digits_3_4-v2 noscope-coral --folds 1 --batch_size 32 --trials 3 --min_time 0.5 >> "$out/step_rate.txt" 2>&1
python3 util/step_rate.py sot/coin_count-digits_3_4-v2 noscope-coral --folds 4 --batch_size 128 --trials 3 --min_time 0.5 >> "$out/step_rate.txt" 2>&1

log "f=1 originals (fp32) and f=4 students (default precision), $EPOCHS epochs"
python3 train.py "$work/runs" --datasets $GAME $NOSCOPE --folds 1 4 --recipe distill --epochs $EPOCHS --student_epochs $EPOCHS "${data[@]}" > "$out/train.log" 2>&1 || echo "FAILED train.py" >> "$out/train.log"
for variant in "amp_fp32:--amp fp32" "nchw:--nchw" "amp_fp16:--amp fp16" "init_teacher:--init teacher" "augment:--repeat 0.5 --mixup 0.2"; do
  name=${variant%%:*} flags=${variant#*:}
  log "f=4 students $name ($flags)"
  for ds in $GAME $NOSCOPE; do
    teacher=$(ls "$work"/runs/$ds/fold1/*/none/best.pth)
    python3 fold_trainer.py --dataset $ds --fold 4 --recipe distill --epochs $EPOCHS --teacher "$teacher" $flags \
      --savedir "$work/$name/$ds" "${data[@]}" >> "$out/train.log" 2>&1 || echo "FAILED $name $ds" >> "$out/train.log"
  done
done
python3 - "$work" > "$out/train_cuda.md" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
print("| run | dataset | f | precision | epochs | train images/s | train s | test top-1 |\n|---|---|---|---|---|---|---|---|")
for path in sorted(work.rglob("result.json")):
    r = json.loads(path.read_text())
    name = "default" if path.is_relative_to(work / "runs") else path.relative_to(work).parts[0]
    print(f"| {name} | {r['dataset']} | {r['fold']} | {r['precision']} | {r['epochs']} | "
          f"{r['train_images_per_sec']:,.0f} | {r['train_seconds']:.1f} | {r['test_top1']:.4f} |")
PY

log "quick test tier and the demo, side by side"
(timeout 230 python3 -m pytest -q -n 10 -m "not slow" -p no:cacheprovider tests/ > "$out/pytest.log" 2>&1; echo "pytest rc=$?" >> "$out/pytest.log") &
tests=$!
start=$(date +%s)
timeout 230 python3 train.py "$work/demo" --demo > "$out/demo.log" 2>&1
echo "demo rc=$? after $(( $(date +%s) - start )) s" >> "$out/demo.log"
wait $tests
grep -h "FAILED\|Error\|Traceback" "$out/train.log" | head -20
cat "$out/step_rate.txt" "$out/train_cuda.md"
tail -15 "$out/demo.log"; tail -5 "$out/pytest.log"
log "done"
