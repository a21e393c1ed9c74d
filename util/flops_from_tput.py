"""Convert a measured throughput (images/sec) into FLOPs/sec using `config/model_map.json`.

A FoldedCNN's FLOPs per image are its `fold<f>_ops` divided by f (one input holds f images); the
original CNN's are `og_ops`; the compound-scaled baseline's are those of its phi (`--fold`).
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.tasks import get_task, task_names
from models import MODES
from models.fold import check_fold
from util.flop_count import MODEL_MAP, load_model_map


def flops_per_image(task, mode="folded", fold=1, model_map=None):
    """FLOPs one image costs with `task`'s model in `mode` at `fold` (phi for efficientnet)."""
    task, fold = get_task(task), check_fold(fold)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "original" and fold != 1:
        raise ValueError(f"mode 'original' is the unfolded CNN (fold 1), got fold {fold}: use mode 'folded'")
    model_map = load_model_map() if model_map is None else model_map
    key = task.efficientnet_key if mode == "efficientnet" else task.model_map_key
    if key not in model_map:
        raise ValueError(f"{MODEL_MAP.name} has no model {key!r} (task {task.name!r}, mode {mode!r}); "
                         f"it has: {', '.join(model_map)}. Run ./flop_count.sh --write after adding a model")
    ops_key = "og_ops" if fold == 1 else f"fold{fold}_ops"
    if ops_key not in model_map[key]:
        raise ValueError(f"{MODEL_MAP.name} has no {ops_key} for {key!r}; it has: {', '.join(model_map[key])}")
    images_per_input = fold if mode == "folded" else 1
    return model_map[key][ops_key] / images_per_input


def flops_per_sec(task, images_per_sec, mode="folded", fold=1, model_map=None):
    """FLOPs/sec achieved at `images_per_sec` images/sec."""
    return images_per_sec * flops_per_image(task, mode, fold, model_map)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=task_names(), metavar="TASK", help="one of: " + ", ".join(task_names()))
    parser.add_argument("images_per_sec", type=float, help="measured throughput in images per second")
    parser.add_argument("--mode", choices=MODES, default="folded", help="default: folded")
    parser.add_argument("--fold", type=int, default=1, help="fold f (phi for efficientnet); default 1")
    args = parser.parse_args(argv)
    try:
        print(f"{flops_per_sec(args.task, args.images_per_sec, args.mode, args.fold):.6g}")
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
