#!/usr/bin/env bash
# int8 against fp32 on this CPU, the commands behind results/amd-epyc-avx2/int8/: ./results/amd-epyc-avx2/int8.sh
# [OUTDIR] from the repository root (about 15 minutes on 2 cores; run nothing else beside it). The int8 weights take
# 8 bits where the CPU has VNNI or AMX and 7 where it has not (util/runtime/int8.py weight_bits). BACKEND=onnxruntime
# runs int8 and fp32 on ONNX Runtime (the int8 default before 2026-12-07); by default int8 takes this CPU's default
# (OpenVINO where it has VNNI) and fp32 ONNX Runtime.
#   trials.txt       every interleaved trial's key=value line
#   interleaved.txt  per CNN: int8 and fp32 at f=1 and f=4, 5 trials interleaved (infer.py --fold auto --precision
#                    int8), each precision's fastest fold and their ratio with its range over the trials
#   int8.csv, int8-report/  the int8 sweep of the 10 game and NoScope CNNs at f=1 and f=4 (random weights, calibrated
#                    on random inputs) and its report
set -eu
out=${1:-results/amd-epyc-avx2/int8}
mkdir -p "$out"
tasks=$(python3 -c "from config.tasks import task_names; print(' '.join(task_names('game') + task_names('noscope')))")
: > "$out/interleaved.txt"
: > "$out/trials.txt"
for task in $tasks; do
  echo "## $task" >> "$out/interleaved.txt"
  python3 infer.py "$task" --fold auto --folds 1 4 --precision int8 --trials 5 --backend "${BACKEND:-auto}" \
    | tee -a "$out/trials.txt" \
    | grep -v "^model=" >> "$out/interleaved.txt"
done
models=$(python3 -c "from config.tasks import task_names; from models import model_key; from config.tasks import get_task
print(' '.join(model_key(get_task(t), 'folded') for t in task_names('game') + task_names('noscope')))")
./run_inference.sh "$out/int8.csv" --precision int8 --folds 1 4 --models $models
python3 util/inference_report.py "$out/int8.csv"
cat "$out/interleaved.txt"
