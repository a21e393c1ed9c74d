"""Measure this machine's peak (dense-matmul FLOP/s per precision, memory bandwidth) and describe it.

util/measure/machine.py says what is measured. The inference report divides achieved FLOP/s by this peak
("% of peak") and draws the roofline from it; ./run_inference.sh writes it beside its CSV.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a command: make the repository importable

from util.core.cli import add_device_arg, print_json  # noqa: E402
from util.measure.machine import measure_peak  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arg(parser)
    parser.add_argument("--min_time", type=float, default=0.5, help="seconds per measurement; default 0.5")
    parser.add_argument("--out", metavar="JSON", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    try:
        result = measure_peak(args.device, args.min_time)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    print_json(parser, result, args.out, "--out")


if __name__ == "__main__":
    main()
