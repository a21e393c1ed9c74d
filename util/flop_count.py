"""Count every model's FLOPs and print (or write) `config/model_map.json`.

FLOPs are 2 x the multiply-accumulates of one input (one image for the original CNN and the
compound-scaled baseline, f images for a FoldedCNN), by thop's rules (models/flops.py).
Entry point: ./flop_count.sh.
"""
import argparse
import sys
from pathlib import Path

from models.flops import MODEL_MAP, model_map
from util.core.cli import add_align_arg, print_json, run_command


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flop_count.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", nargs="?", const=str(MODEL_MAP), metavar="PATH",
                        help="also write the JSON to PATH (default: config/model_map.json, the committed copy)")
    add_align_arg(parser, ": count them (the baselines are left out)")
    args = parser.parse_args(argv)
    if args.align > 1 and args.write and Path(args.write).resolve() == MODEL_MAP.resolve():
        parser.error(f"--align {args.align} counts other models than the paper's: give --write another PATH "
                     f"({MODEL_MAP.name} keeps the paper's table)")
    counts = model_map(args.align)
    print_json(parser, counts, args.write, "--write")
    if args.write:
        print(f"wrote {len(counts)} models' FLOP counts to {args.write}", file=sys.stderr)


if __name__ == "__main__":
    run_command(main)
