#!/usr/bin/env bash
# Trained models in int8 on this CPU, the commands behind results/amd-epyc-zen4/int8/accuracy*.md:
# ./results/amd-epyc-zen4/int8_accuracy.sh [WORK] from the repository root (about 10 minutes on 2 cores in bf16).
#   1. trains results/accuracy/int8.md's tasks (goldnumber-fraction and the four NoScope stand-ins) at f=1 and as
#      the distill recipe's f=4 students, seed 19, as the accuracy table trains them (bf16 on a CPU with AVX-512 BF16)
#   2. accuracy.md / accuracy_minmax.md: int8 against fp32 on every run's test split, activation ranges from the
#      calibration images' 99.999th percentile (the default) and from their minimum and maximum
#   3. calibration.txt: the hardest model (goldnumber-fraction f=4) at 128 to 4096 calibration images, both methods
set -eu
work=${1:-/tmp/int8_accuracy}
out=results/amd-epyc-zen4/int8
data=(--data_dir "$work/data" --data_root "$work/data_root")
python3 util/accuracy_table.py "$work/runs" --out "$work/table" --folds 4 --recipes distill --amp bf16 "${data[@]}" \
  --tasks lol/goldnumber-fraction noscope-coral noscope-night noscope-roundabout noscope-taipei
python3 util/int8_table.py "$work/runs" "${data[@]}" --out "$out/accuracy"
python3 util/int8_table.py "$work/runs" "${data[@]}" --calibration_method minmax --out "$out/accuracy_minmax"
run=$(dirname "$(ls "$work"/runs/synthetic-lol/goldnumber-fraction/fold4/*/distill/result.json)")
: > "$out/calibration.txt"
for images in 128 256 512 1024 2048 4096; do
  for method in minmax percentile; do
    echo "$method $images: $(python3 util/int8_table.py "$run" "${data[@]}" --calibration "$images" \
      --calibration_method "$method" | grep '^| synthetic' | cut -d'|' -f5-8)" >> "$out/calibration.txt"
  done
done
cat "$out/calibration.txt"
