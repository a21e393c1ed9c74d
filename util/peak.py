"""Measure this machine's matmul probe (dense-matmul FLOP/s per precision) and memory bandwidth, and describe it.

util/measure/machine.py says what is measured. The inference report divides achieved FLOP/s by the probe
("% of matmul probe") and draws the roofline from it; ./run_inference.sh writes it beside its CSV. The probe is
one large matmul: a reference, not a ceiling, since tuned convolution kernels of the same precision can beat it.
"""
import argparse

from util.core.cli import add_device_arg, add_out_arg, one_line_errors, out_paths, print_json, run_command
from util.measure.machine import measure_peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arg(parser)
    parser.add_argument("--min_time", type=float, default=0.5, help="seconds per measurement; default 0.5")
    add_out_arg(parser, ["json"])
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        result = measure_peak(args.device, args.min_time)
    print_json(parser, result, args.out and out_paths(args.out, ["json"])["json"], "--out")


if __name__ == "__main__":
    run_command(main)
