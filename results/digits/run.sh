#!/usr/bin/env bash
# Fold your own CNN on real images this project did not make: scikit-learn's UCI handwritten digits (1,797 8x8
# grayscale images), a user's CNN (results/digits/my_models.py), f = 1..4 with the defaults of train.py
# --model_file (f=1 trained, folded runs distilled from it), at the default 30 epochs and at 150; then each
# budget's table (util/choose_fold.py, throughput measured now with trials interleaved over the folds).
# Needs scikit-learn: pip install scikit-learn. Usage: results/digits/run.sh [WORKDIR] (default /tmp/digits-run)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/digits-run}
MODEL=results/digits/my_models.py:build
[ -d "$WORK/digits" ] || python3 results/digits/make_digits.py "$WORK/digits"
for EPOCHS in 30 150; do
    python3 train.py "$WORK/runs$EPOCHS" --model_file $MODEL --data "$WORK/digits" --epochs $EPOCHS \
        > "$WORK/train$EPOCHS.log"
    python3 util/choose_fold.py "$WORK/runs$EPOCHS" --measure --trials 7 --max_drop 0.5 \
        --out results/digits/table_${EPOCHS}epochs
done
