"""Hardware-aligned widths against the paper's: images/sec and FLOPs/image of each FoldedCNN with every widened
layer rounded up to a multiple of N (`--align N`, beyond the paper) and at the paper's int(c*sqrt(f)).

Per task, f=1 (the original) and every (fold, align) are set up once on the default inference path of
this device (util/measure/benchmark.py; logits checked against eager fp32), then their trials are interleaved so
that drift in the machine's speed hits them alike. The table gives the median images/sec, the speed over
the paper's widths at the same fold and over f=1, the FLOPs per image (counted from the model) and the
first layer's width.

    python3 util/benchmark_align.py --out results/NAME/align.md
"""
import argparse
import sys

import torch
from tqdm import tqdm

from config.tasks import all_tasks
from models import build_model
from util.core.cli import add_device_arg, add_out_arg, markdown_table, one_line_errors, out_paths, positive_int, print_text, run_command
from util.core.device import cpu_name, pick_device
from util.measure.benchmark import SWEEP_FAMILIES, Benchmark, Config, interleaved_medians, timing_protocol
from util.measure.compare import speedups


def first_width(task, fold, align):
    model, _ = build_model(task, fold, align=align)
    return next(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def measure(task, folds, aligns, batch_size, device, protocol, trials, min_time):
    """{(fold, align): (median images/sec, FLOPs/image)} with (1, 1) the original, trials interleaved."""
    path = dict(task=task, batch_size=batch_size, precision=protocol["precision"], device=device)
    configs = {(1, 1): Config(**path, mode="original", fold=1)}
    configs.update({(f, a): Config(**path, mode="folded", fold=f, align=a) for f in folds for a in aligns})
    benches = {key: Benchmark(config, protocol["warmup"]) for key, config in configs.items()}
    speeds = interleaved_medians(benches, trials, protocol["iters"], min_time)
    return {key: (speeds[key], benches[key].flops_per_image) for key in benches}, benches[(1, 1)].backend


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(all_tasks()), metavar="TASK",
                        help="default: the game and NoScope tasks")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[2, 3], help="default 2 3")
    parser.add_argument("--aligns", nargs="+", type=positive_int, default=[8, 16],
                        help="alignments compared with the paper's widths; default 8 16")
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    parser.add_argument("--trials", type=positive_int, default=3, help="interleaved trials; default 3")
    parser.add_argument("--min_time", type=float, default=None, help="seconds per trial; default the protocol's")
    add_device_arg(parser)
    add_out_arg(parser, ["md"])
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    tasks = args.tasks or [name for name, t in all_tasks().items() if t.family in SWEEP_FAMILIES]
    protocol = timing_protocol(device)
    min_time = protocol["min_time"] if args.min_time is None else args.min_time
    aligns = [1] + [a for a in args.aligns if a != 1]
    rows, backend = [], None
    for task in tqdm(tasks, desc="aligned widths", unit="task", file=sys.stderr, disable=not sys.stderr.isatty()):
        with one_line_errors(parser):
            results, backend = measure(task, args.folds, aligns, args.batch_size, str(device), protocol, args.trials,
                                       min_time)
        medians = {key: ips for key, (ips, _) in results.items()}
        over_f1 = speedups(medians, base=(1, 1))
        rows.append([task, 1, "-", first_width(task, 1, 1), f"{results[(1, 1)][1] / 1e6:.2f}",
                     f"{medians[(1, 1)]:,.0f}", "-", f"{over_f1[(1, 1)]:.2f}x"])
        for f in args.folds:
            over_paper = speedups(medians, base=(f, 1))
            for a in aligns:
                ips, flops = results[(f, a)]
                rows.append([task, f, "paper" if a == 1 else a, first_width(task, f, a), f"{flops / 1e6:.2f}",
                             f"{ips:,.0f}", f"{over_paper[(f, a)]:.2f}x", f"{over_f1[(f, a)]:.2f}x"])
    where = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    setting = f"{where}, {backend}, {protocol['precision']}, batch {args.batch_size}"
    lines = [f"# Aligned widths against the paper's ({setting})", "",
             f"Command: `python3 util/benchmark_align.py {' '.join(sys.argv[1:])}`. Median images/sec of "
             f"{args.trials} interleaved trials; FLOPs per image counted from the model (MFLOPs).", ""]
    lines += markdown_table(["task", "f", "align", "first width", "MFLOPs/image", "images/sec", "vs paper widths",
                             "vs f=1"], rows)
    print_text(parser, lines, args.out and out_paths(args.out, ["md"])["md"])


if __name__ == "__main__":
    run_command(main)
