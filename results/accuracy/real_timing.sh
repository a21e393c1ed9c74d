#!/usr/bin/env bash
# Training seconds per epoch on the real-image benchmark, nothing else running: each task's original (f=1, the
# paper's protocol: fp32, 32 images a batch) against f=4 students of --recipe distill at 128 images a batch (the
# recipe's 32 folded inputs) and at 32 (--batch_size 32), in bf16 (this CPU's default) and fp32; 4 epochs each,
# twice, interleaved. Needs the originals of results/accuracy/real_screening.sh. Usage: real_timing.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/real-screening}
export FOLDEDCNNS_TASKS="$WORK/bench/tasks"
for rep in 1 2; do
    for t in photos textures digits; do
        teacher="$WORK/base/real/$t/fold1/multiplier1/none/best.pth"
        for cfg in "f1" "s128 --batch_size 128" "s32 --batch_size 32" "s128fp32 --batch_size 128 --amp fp32" \
                   "s32fp32 --batch_size 32 --amp fp32"; do
            read -r name flags <<< "$cfg"
            d="$WORK/timing/$rep/$t/$name"; rm -rf "$d"
            if [ "$name" = f1 ]; then
                python3 fold_trainer.py --dataset real/$t --fold 1 --epochs 4 --data_root "$WORK/bench/data" \
                    --savedir "$d" > /dev/null
            else
                # shellcheck disable=SC2086
                python3 fold_trainer.py --dataset real/$t --fold 4 --recipe distill --teacher "$teacher" --epochs 4 \
                    --data_root "$WORK/bench/data" --savedir "$d" $flags > /dev/null
            fi
            python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], \
round(r['train_seconds'] / r['epochs'], 3), r['precision'])" "$d/result.json" "$rep $t $name"
        done
    done
done
