#!/usr/bin/env bash
# Training precision and memory format on the demo's runs (synthetic sot/coin_count and noscope-coral, f=1 and f=4).
# Then the step's ceiling on resident data. Usage: results/intel-xeon-amx/training.sh [WORKDIR]; the summaries are
# WORKDIR/demo_<setting>/summary.csv, the step rates WORKDIR/step_rate.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/training-precision}
mkdir -p "$OUT"
for v in "nchw-fp32:--nchw" "channels-last-fp32:" "channels-last-bf16:--amp bf16"; do
    name=${v%%:*}; flags=${v#*:}
    python3 train.py "$OUT/demo_$name" --demo --data_root "$OUT/data_root" --data_dir "$OUT/data" $flags > "$OUT/demo_$name.log" 2>&1
done
python3 util/step_rate.py sot/coin_count-digits_3_4-v2 noscope-coral --folds 1 4 | tee "$OUT/step_rate.txt"
python3 util/step_rate.py cifar10 --folds 1 4 --trials 3 | tee -a "$OUT/step_rate.txt"
