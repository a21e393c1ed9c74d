#!/usr/bin/env bash
# Fold your own CNN on real images this project did not make: scikit-learn's UCI handwritten digits (1,797 8x8
# grayscale images), a user's CNN (docs/examples/my_models.py), f = 1..4 with the defaults of train.py
# --model_file (f=1 trained, folded runs distilled from it), every fold at the default 30 epochs and at 150 (as
# these tables were made, before the students' budget became 3x the original's: --student_epochs), the students in
# the default precision (bf16 on a CPU with bf16 instructions) and in fp32 (--amp fp32); then each budget's and
# precision's table (util/choose_fold.py, throughput measured now with trials interleaved over the folds).
# Needs scikit-learn: pip install scikit-learn. Usage: results/digits/run.sh [WORKDIR] (default /tmp/digits-run)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/digits-run}
MODEL=docs/examples/my_models.py:build
[ -d "$WORK/digits" ] || python3 docs/examples/make_digits.py "$WORK/digits"
for EPOCHS in 30 150; do
    for PRECISION in default fp32; do
        RUNS="$WORK/runs$EPOCHS"; FLAGS=(); SUFFIX=""
        if [ $PRECISION = fp32 ]; then RUNS="$RUNS-fp32"; FLAGS=(--amp fp32); SUFFIX="_fp32"; fi
        python3 train.py "$RUNS" --model_file $MODEL --data "$WORK/digits" --epochs $EPOCHS --student_epochs $EPOCHS "${FLAGS[@]}" \
            > "$WORK/train$EPOCHS$SUFFIX.log"
        python3 util/choose_fold.py "$RUNS" --measure --trials 7 --max_drop 0.5 \
            --out "results/digits/table_${EPOCHS}epochs$SUFFIX"
    done
done
python3 infer.py --model_file $MODEL --input_shape 1 8 8 --fold auto --trials 7 --json > "$WORK/throughput.jsonl"
