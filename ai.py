"""Print the arithmetic intensity (FLOPs per byte moved) of the original and folded CNNs.

One CSV row per model: AI at f = 1..4 (the compound-scaled baselines: phi = 1, 2), counted over the
conv and linear layers at --batch_size images per batch (models/flops.py has the formula).
"""
import argparse
import csv
import sys

from models.flops import FOLDS, ai_table
from util.core.cli import positive_int, run_command

HEADER = ["model", "batch_size", "original_AI", "tformed_AI_2", "tformed_AI_3", "tformed_AI_4"]


def batch_size(text):
    """argparse type for --batch_size: enough images for one input at the largest fold."""
    value = positive_int(text)
    if value < max(FOLDS):
        raise argparse.ArgumentTypeError(f"must be at least {max(FOLDS)} so that every fold gets one input, got {value}")
    return value


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    parser.add_argument("--batch_size", type=batch_size, default=1024,
                        help="images per batch (default 1024, the paper's); at least 4, the largest fold")
    parser.add_argument("--bytes_per_elt", type=positive_int, default=2,
                        help="bytes per element moved (default 2: fp16; 4 for fp32)")
    parser.add_argument("--match_published", action="store_true",
                        help="compute the efficientnet phi=2 column at batch_size/2 inputs, as the published table did")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(HEADER)
    for row in ai_table(args.batch_size, args.bytes_per_elt, args.match_published):
        writer.writerow([f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v) for v in row])


if __name__ == "__main__":
    run_command(main)
