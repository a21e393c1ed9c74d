"""Experiment: a distilled f > 1 student initialised from its trained f=1 teacher, against the recipe's
fresh initialisation. Not part of the trainer: results/accuracy/choices.md, round 4, says what it gave.

The teacher's weights are copied block-diagonally: slot j's input channels feed hidden block j, which feeds slot j's
logits, for as many slots as the folded widths hold copies of the original's (2 at f=4 with multiplier 2); the other
entries of the copied rows are zeroed, so those slots start as exact copies of the teacher, and the remaining slots
start from the fresh initialisation.

    python3 results/accuracy/teacher_init.py synthetic-sot/coin_count-digits_3_4-v2 --fold 4 --epochs 40 \
        --teacher T/best.pth --savedir /tmp/ti --init teacher --data_root DATA_ROOT [--lr 3e-4] [--lr_schedule constant] [--shift PIXELS]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a command: make the repository importable

import torch  # noqa: E402

from util.core.device import pick_device  # noqa: E402
from util.train import trainer  # noqa: E402
from util.train.spec import build_spec  # noqa: E402
from util.train.trainer import Options, fast_amp, load_teacher  # noqa: E402


@torch.no_grad()
def from_teacher(student, teacher):
    """Copy `teacher`'s weights into `student`'s block-diagonal slots (both plain nets with the same layer names);
    returns the number of slots copied in the last weight layer."""
    s_state, t_state = student.state_dict(), teacher.state_dict()
    copies, done = None, {}
    for key, s in s_state.items():
        t = t_state.get(key)
        if t is None or s.dim() == 0 or not s.is_floating_point():
            continue
        new = s.clone()
        if s.dim() >= 2:  # a weight: (out, in, ...)
            out, cin = t.shape[0], t.shape[1]
            copies = min(s.shape[0] // out, s.shape[1] // cin)
            new[:copies * out] = 0
            for j in range(copies):
                new[j * out:(j + 1) * out, j * cin:(j + 1) * cin] = t
        else:  # a bias or a norm's vector: the blocks of the weight before it
            for j in range(min(copies or 1, s.shape[0] // t.shape[0])):
                new[j * t.shape[0]:(j + 1) * t.shape[0]] = t
        done[key] = new
    student.load_state_dict({**s_state, **done})
    return copies


@torch.no_grad()
def every_slot_from_teacher(student, teacher, fold):
    """Give every slot a copy of `teacher`: slot j's input channels feed hidden block j % copies (scaled by
    copies / fold, so a block sees the mean of its slots' images), the hidden layers hold the copies
    block-diagonally, and slot j's logits read block j % copies. At f=4 (2 copies) slots 0 and 2 start as the
    teacher on the mean of their two images, slots 1 and 3 likewise; returns the number of copies."""
    s_state, t_state = student.state_dict(), teacher.state_dict()
    weights = [k for k, s in s_state.items() if s.dim() >= 2 and k in t_state]
    first, last = weights[0], weights[-1]
    copies, done = None, {}
    for key in weights:
        s, t = s_state[key], t_state[key]
        out, cin = t.shape[0], t.shape[1]
        new = torch.zeros_like(s)
        if key == first:
            copies = s.shape[0] // out
            for j in range(fold):
                b = j % copies
                new[b * out:(b + 1) * out, j * cin:(j + 1) * cin] = t * copies / fold
        elif key == last:
            for j in range(fold):
                b = j % copies
                new[j * out:(j + 1) * out, b * cin:(b + 1) * cin] = t
        else:
            for b in range(copies):
                new[b * out:(b + 1) * out, b * cin:(b + 1) * cin] = t
        done[key] = new
        bias = key[:-len("weight")] + "bias"
        if bias in t_state:
            tb, sb = t_state[bias], torch.zeros_like(s_state[bias])
            for j in range(fold if key == last else copies):
                sb[j * tb.shape[0]:(j + 1) * tb.shape[0]] = tb
            done[bias] = sb
    student.load_state_dict({**s_state, **done})
    return copies


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--fold", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--savedir", required=True)
    parser.add_argument("--init", choices=("fresh", "teacher", "every"), default="teacher",
                        help="fresh, teacher (two slots copied), every (every slot reads a copy)")
    parser.add_argument("--repeat", type=float, default=None)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--amp", default=None, help="default: the device's fast precision")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lr_schedule", default=None)
    parser.add_argument("--shift", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--data_root", default=None)
    args = parser.parse_args()
    build = trainer.build_classifier

    def build_student(task, fold, multiplier, mode, align):
        model = build(task, fold, multiplier, mode, align)
        if args.init == "teacher" and fold > 1:
            print("slots copied:", from_teacher(model.net, load_teacher(args.teacher, task, "cpu").net), flush=True)
        if args.init == "every" and fold > 1:
            teacher = load_teacher(args.teacher, task, "cpu").net
            print("copies:", every_slot_from_teacher(model.net, teacher, fold), flush=True)
        return model

    trainer.build_classifier = build_student
    overrides = {"lr": args.lr, "lr_schedule": args.lr_schedule, "shift": args.shift, "repeat": args.repeat}
    spec = build_spec(args.dataset, args.fold, args.savedir, recipe="distill", epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      teacher=args.teacher, amp=args.amp, fast_amp=fast_amp(pick_device(None)), overrides=overrides)
    result = trainer.train(spec, Options(data_dir=args.data_dir, data_root=args.data_root))
    print(json.dumps({k: result[k] for k in ("test_top1", "worst_slot_test_top1", "test_slot_top1",
                                             "train_seconds")}))


if __name__ == "__main__":
    main()
