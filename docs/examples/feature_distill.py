"""Example: a variant of training built on the trainer's extension points (util.train.trainer.Hooks).

Per-slot feature distillation beside the distill recipe's logit loss (results/accuracy/choices.md, round 8, says what
it gave on the stand-ins: it did not beat the recipe, which is why it is an example and not a recipe). The teacher's
penultimate features (the input of its last linear layer) of every image are kept beside its logits as the
distillation targets; a linear head maps the student's penultimate features (shared by the folded group) to the
teacher's features of each slot's image; their mean squared error, divided by the mean square of the teacher's
features, is added to the loss at --feature_weight. The heads train with the student and are dropped from best.pth
and current.pth when the run ends, so the checkpoints load, export and resume like any other.

    python3 docs/examples/feature_distill.py synthetic-noscope-roundabout --fold 4 --epochs 20 \\
        --teacher T/best.pth --savedir /tmp/fd --feature_weight 1 --data_dir DATA --data_root DATA_ROOT
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from datasets.loaders import collate
from util.core.cli import run_command
from util.core.device import pick_device
from util.train.checkpoint import save_checkpoint
from util.train.spec import build_spec
from util.train.trainer import Hooks, Options, fast_amp, train

HEADS = "feature_heads"


def last_linear(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


class FeatureDistillation:
    """The four hooks that make the variant, sharing what they learn about the teacher."""

    def __init__(self, weight):
        self.weight, self.classes, self.scale, self.width = weight, None, None, None
        self.heads, self.student_features = None, None

    def targets(self, teacher, data, device, cache):
        """The teacher's logits, then its penultimate features, per image (computed each run: no cache)."""
        features = []
        handle = last_linear(teacher.net).register_forward_hook(lambda m, inputs, out: features.append(inputs[0]))
        rows = []
        with torch.no_grad():
            for images, _ in torch.utils.data.DataLoader(data, batch_size=256, shuffle=False, collate_fn=collate):
                logits = teacher(images.to(device)).float().cpu()
                rows.append(torch.cat([logits, features.pop().float().cpu()], 1))
        handle.remove()
        out = torch.cat(rows)
        self.classes = logits.shape[1]
        self.width = out.shape[1] - self.classes
        self.scale = self.scale or out[:, self.classes:].pow(2).mean().item()
        return out

    def build(self, spec):
        """The run's student with one linear head per slot (one Linear for all) on its penultimate features."""
        model = Hooks().build(spec)
        last_linear(model.net).register_forward_hook(self.keep)
        self.heads = nn.Linear(last_linear(model.net).in_features, spec.fold * self.width)
        model.add_module(HEADS, self.heads)  # a submodule: the optimizer trains it, the checkpoints hold it
        return model

    def keep(self, module, inputs, output):
        self.student_features = inputs[0]

    def loss(self, logits, labels, targets, protocol, images_per_input=1):
        base = Hooks().loss(logits, labels, targets[:, :self.classes], protocol, images_per_input)
        features = self.student_features  # one row per folded input; the targets one per image
        goal = targets[:, self.classes:].reshape(features.shape[0], -1)
        return base + self.weight * F.mse_loss(self.heads(features.float()), goal) / self.scale


def drop_heads(savedir):
    """best.pth and current.pth without the heads' weights: the student's own checkpoints."""
    for name in ("best.pth", "current.pth"):
        path = Path(savedir) / name
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "training_model"):
            if state.get(key):
                state[key] = {k: v for k, v in state[key].items() if not k.startswith(HEADS + ".")}
        save_checkpoint(path, **state)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a task or stand-in, e.g. synthetic-noscope-roundabout")
    parser.add_argument("--fold", type=int, default=4, help="default 4")
    parser.add_argument("--epochs", type=int, default=20, help="default 20")
    parser.add_argument("--teacher", required=True, help="the trained original's best.pth")
    parser.add_argument("--savedir", required=True, help="the run's directory")
    parser.add_argument("--feature_weight", type=float, default=1.0, help="weight of the feature loss; default 1")
    parser.add_argument("--seed", type=int, default=19, help="default 19")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else the CPU")
    parser.add_argument("--data_dir", default="data", help="folder of CIFAR and NoScope data; default data/")
    parser.add_argument("--data_root", default=None, help="folder of the game data")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    variant = FeatureDistillation(args.feature_weight)
    hooks = Hooks(build=variant.build, targets=variant.targets, loss=variant.loss)
    spec = build_spec(args.dataset, args.fold, args.savedir, recipe="distill", epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, teacher=args.teacher,
                      fast_amp=fast_amp(pick_device(args.device)))
    result = train(spec, Options(device=args.device, data_dir=args.data_dir, data_root=args.data_root), hooks)
    drop_heads(args.savedir)
    print(json.dumps({k: result[k] for k in ("test_top1", "worst_slot_test_top1", "test_slot_top1", "train_seconds")}))
    return result


if __name__ == "__main__":
    run_command(main)
