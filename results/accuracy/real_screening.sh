#!/usr/bin/env bash
# Rounds 14, 15 and 18's screening on the real-image benchmark (results/accuracy/choices.md): the originals (f=1) of
# photos, textures and digits at the benchmark's epochs, then f=4 students of --recipe distill at the budget of those
# rounds (3x the original's epochs, no bound in seconds) with one change each, against those originals. Round 14's
# students trained before --batchnorm existed (off), round 15's with it, both from their teacher (--init teacher, the
# game recipe's start then); round 18's with their slots apart. Usage: results/accuracy/real_screening.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/real-screening}
[ -d "$WORK/bench" ] || python3 util/make_real_tasks.py "$WORK/bench"
export FOLDEDCNNS_TASKS="$WORK/bench/tasks"
epochs() { case $1 in digits) echo 60;; *) echo 40;; esac; }
for t in digits photos textures; do  # the baseline: the recipe as it was, the originals with it
    python3 train.py "$WORK/base" --datasets real/$t --data_root "$WORK/bench/data" --folds 1 4 --recipe distill \
        --epochs "$(epochs $t)" --batchnorm off --init teacher --student_epochs $((3 * $(epochs $t))) > "$WORK/base_$t.log"
done
student() {  # NAME FLAGS TASK...: f=4 students with FLAGS against the baseline's originals
    local name=$1 flags=$2; shift 2
    for t in "$@"; do
        # shellcheck disable=SC2086
        python3 train.py "$WORK/$name" --datasets real/$t --data_root "$WORK/bench/data" --folds 4 --recipe distill \
            --epochs "$(epochs $t)" --teacher "$WORK/base/real/$t/fold1/multiplier1/none/best.pth" \
            --init teacher --student_epochs $((3 * $(epochs $t))) $flags \
            > "$WORK/${name}_$t.log"
    done
}
student e1 "--batchnorm off --shift 4 --consistent on" photos digits textures
student bs32 "--batchnorm off --batch_size 32" photos textures
student ep360 "--batchnorm off --student_epochs 360" photos textures
student lr4 "--batchnorm off --lr 4e-3" photos textures
student fresh "--batchnorm off --init fresh" photos textures digits
student bs16 "--batchnorm off --batch_size 16" photos textures
student bs32lr1 "--batchnorm off --batch_size 32 --lr 1e-3" photos textures
student bs32sh "--batchnorm off --batch_size 32 --shift 3" photos textures
student bs32e240 "--batchnorm off --batch_size 32 --student_epochs 240" photos textures
student bs32e240fr "--batchnorm off --batch_size 32 --student_epochs 240 --init fresh" photos textures
student bs32e240c "--batchnorm off --batch_size 32 --student_epochs 240 --shift 3 --consistent on" photos textures
student bs32lr3 "--batchnorm off --batch_size 32 --lr 3e-4" photos textures
student lr5 "--batchnorm off --lr 5e-4" photos textures
student bs32lr3e240 "--batchnorm off --batch_size 32 --lr 3e-4 --student_epochs 240" photos textures
student idata "--batchnorm off --init data" photos textures digits
student idatabs32 "--batchnorm off --init data --batch_size 32" photos textures
student base_s20 "--batchnorm off --seed 20" photos textures
student idata_s20 "--batchnorm off --init data --seed 20" photos textures
student fresh_s20 "--batchnorm off --init fresh --seed 20" photos textures
student bn "--batchnorm on" photos textures digits
student bn_s20 "--batchnorm on --seed 20" photos textures digits
student bn5x "--batchnorm on --student_epochs 200" photos
student bndata "--batchnorm on --init data" photos
student bnshc "--batchnorm on --shift 4 --consistent on" photos textures
student bnsh "--batchnorm on --shift 2" photos textures
student bnmixc "--batchnorm on --mixup 0.4 --consistent on" photos textures
student bnkl "--batchnorm on --distill_loss kl" photos textures
student bnT1 "--batchnorm on --temperature 1" photos textures
student sep "--batchnorm on --init separate" photos textures digits  # round 18
student sep_f2 "--batchnorm on --init separate --folds 2" photos  # round 18, f=2 (a later --folds wins)
student sep_f3 "--batchnorm on --init separate --folds 3" photos
for d in "$WORK"/*/; do  # one line per student: name, task, epochs, seconds, best epoch, val and test top-1
    for r in "$d"real/*/fold[234]/*/distill/result.json; do
        [ -f "$r" ] && python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], r['dataset'], \
r['epochs'], round(r['train_seconds'], 1), r['best_epoch'], round(r['best_val_top1'], 3), round(r['test_top1'], 3))" \
            "$r" "$(basename "$d")"
    done
done
