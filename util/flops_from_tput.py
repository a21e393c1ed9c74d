"""Convert a measured throughput (images/sec) into FLOPs/sec using `config/model_map.json`.

A FoldedCNN's FLOPs per image are its `fold<f>_ops` divided by f (one input holds f images); the
original CNN's are `og_ops`; the compound-scaled baseline's are those of its phi (`--fold`).
"""
import argparse

from config.tasks import task_names
from models import MODES
from models.flops import flops_per_image
from util.core.cli import one_line_errors, run_command


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=task_names(), metavar="TASK", help="one of: " + ", ".join(task_names()))
    parser.add_argument("images_per_sec", type=float, help="measured throughput in images per second")
    parser.add_argument("--mode", choices=MODES, default="folded", help="default: folded")
    parser.add_argument("--fold", type=int, default=1, help="fold f (phi for efficientnet); default 1")
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        per_image = flops_per_image(args.task, args.mode, args.fold)
    print(f"{args.images_per_sec * per_image:.6g} FLOPs/sec ({args.task}, {args.mode}, fold {args.fold}: "
          f"{per_image:.6g} FLOPs per image x {args.images_per_sec:g} images/sec)")


if __name__ == "__main__":
    run_command(main)
