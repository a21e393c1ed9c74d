"""Experiment: per-slot feature distillation beside the recipe's logit KL. Not part of the trainer (yet):
results/accuracy/choices.md, round 8, says what it gave.

The teacher's penultimate features (the input of its last linear layer) of every image are cached beside its logits;
a linear head per slot maps the student's penultimate features (shared by the folded group) to the teacher's
features of that slot's image, and their mean squared error, divided by the mean square of the teacher's features,
is added to the loss at `--feature_weight`. The heads train with the student and are dropped after training.

    python3 results/accuracy/feature_distill.py synthetic-noscope-roundabout --fold 4 --epochs 20 \\
        --teacher T/best.pth --savedir /tmp/fd --feature_weight 1 --data_dir DATA --data_root DATA_ROOT
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a command: make the repository importable

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from datasets.loaders import collate  # noqa: E402
from util.core.device import pick_device  # noqa: E402
from util.train import loop, trainer  # noqa: E402
from util.train.spec import build_spec  # noqa: E402
from util.train.trainer import Options, fast_amp  # noqa: E402


def last_linear(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


class Features:
    """The input of `net`'s last linear layer at its latest forward."""

    def __init__(self, net):
        self.value = None
        last_linear(net).register_forward_hook(self.keep)

    def keep(self, module, inputs, output):
        self.value = inputs[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--fold", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--savedir", required=True)
    parser.add_argument("--feature_weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--shift", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--data_root", default=None)
    args = parser.parse_args()
    state = {}
    original_logits = trainer.teacher_logits

    @torch.no_grad()
    def logits_and_features(teacher, data, device, cache):
        hook = Features(teacher.net)
        loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=False, collate_fn=collate)
        rows = []
        for images, _ in loader:
            logits = teacher(images.to(device)).float().cpu()
            rows.append(torch.cat([logits, hook.value.float().cpu()], 1))
        original_logits(teacher, data, device, cache)  # the logits' cache, as the trainer keeps it
        out = torch.cat(rows)
        state.setdefault("classes", logits.shape[1])
        state.setdefault("scale", out[:, logits.shape[1]:].pow(2).mean().item())
        state.setdefault("teacher_width", out.shape[1] - logits.shape[1])
        return out

    trainer.teacher_logits = logits_and_features
    build = trainer.build_classifier

    def build_student(task, fold, multiplier, mode, align):
        model = build(task, fold, multiplier, mode, align)
        state["student"] = Features(model.net)
        state["heads"] = nn.Linear(last_linear(model.net).in_features, fold * state["teacher_width"])
        model.add_module("feature_heads", state["heads"])  # trained with the student; dropped by the checkpoint's net
        return model

    trainer.build_classifier = build_student
    base_loss = loop.training_loss

    def loss_with_features(logits, labels, teacher, protocol, fold=1):
        k = state["classes"]
        loss = base_loss(logits, labels, teacher[:, :k], protocol, fold)
        h = state["student"].value
        target = teacher[:, k:].reshape(h.shape[0], -1)
        return loss + args.feature_weight * F.mse_loss(state["heads"](h.float()), target) / state["scale"]

    loop.training_loss = loss_with_features
    overrides = {"lr": args.lr, "shift": args.shift}
    spec = build_spec(args.dataset, args.fold, args.savedir, recipe="distill", epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, teacher=args.teacher, amp=None,
                      fast_amp=fast_amp(pick_device(None)), overrides=overrides)
    result = trainer.train(spec, Options(data_dir=args.data_dir, data_root=args.data_root))
    print(json.dumps({k: result[k] for k in ("test_top1", "worst_slot_test_top1", "test_slot_top1",
                                             "train_seconds")}))


if __name__ == "__main__":
    main()
