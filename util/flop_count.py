"""Count every model's FLOPs with thop and print (or write) `config/model_map.json`.

FLOPs are 2 x thop's multiply-accumulates for one input: one image for the original CNN and
the compound-scaled baseline, f images for a FoldedCNN with fold f. Entry point: ./flop_count.sh.
"""
import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from thop import profile

from config.tasks import CONFIG_DIR, all_tasks
from models import build_model
from util.common import print_json

MODEL_MAP = CONFIG_DIR / "model_map.json"
FOLDS = (2, 3, 4)


def count_flops(task, fold=1, mode="folded"):
    """FLOPs (2 x MACs, by thop) of one forward pass on one input of `task`'s model."""
    model, input_shape = build_model(task, fold, mode)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():  # thop prints notes on stdout
        macs, _ = profile(model.eval(), inputs=(torch.zeros(1, *input_shape),), verbose=False)
    return int(round(2 * macs))


def model_map():
    """`{key: {"og_ops": N, "fold2_ops": N, ...}}` for every model the paper measures."""
    tasks = all_tasks().values()
    result = {}
    for task in tasks:
        result[task.model_map_key] = {"og_ops": count_flops(task, 1, "original")}
        result[task.model_map_key].update({f"fold{f}_ops": count_flops(task, f) for f in FOLDS})
    for task in tasks:
        if task.compound_scaling_baseline:
            result[task.efficientnet_key] = {"og_ops": count_flops(task, 1, "efficientnet"),
                                            "fold2_ops": count_flops(task, 2, "efficientnet")}
    return result


def load_model_map(path=MODEL_MAP):
    """The committed FLOP counts."""
    return json.loads(Path(path).read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", nargs="?", const=str(MODEL_MAP), metavar="PATH",
                        help="also write the JSON to PATH (default: config/model_map.json, the committed copy)")
    args = parser.parse_args(argv)
    counts = model_map()
    print_json(parser, counts, args.write, "--write")
    if args.write:
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
