"""Plain eager PyTorch vs this project's default inference path, in one run on this machine.

"Plain eager" is what a user would write: the original CNN, batch 1024, fp32, NCHW, one call per
batch. The default path is infer.py's (on the CPU: ONNX Runtime in cache-sized chunks), or the
--backend and --precision given (bf16 on a CPU with bf16 instructions: torch.compile). Both run
the original CNN, and the default path also runs the FoldedCNN at f=4 (and any --folds given).
Trials of the three are interleaved so that drift in the machine's speed hits them alike; the
table shows medians and the ratios of medians, and the last lines the median ratio over models.
"""
import argparse
import statistics
import sys

from tqdm import tqdm

from config.tasks import all_tasks
from util.core.cli import add_device_arg, add_out_arg, one_line_errors, out_paths, positive_int, print_text, run_command
from util.core.device import pick_device
from util.measure.benchmark import SWEEP_FAMILIES, compare_with_plain_eager
from util.runtime.backends import BACKENDS, PRECISIONS
from util.measure.compare import medians, speedups


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", help="tasks; default: the 10 game and NoScope CNNs")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[4],
                        help="folds of the default path; default 4")
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    parser.add_argument("--trials", type=positive_int, default=3, help="interleaved trials; default 3")
    parser.add_argument("--min_time", type=float, default=1.0, help="seconds per trial at least; default 1.0")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="precision of the default path (plain eager stays fp32); default fp32")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                        help="backend of the default path; default auto (the measured fastest for the precision)")
    add_device_arg(parser)
    add_out_arg(parser, ["md"])
    args = parser.parse_args(argv)
    tasks = args.tasks or [t.name for t in all_tasks().values() if t.family in SWEEP_FAMILIES]
    with one_line_errors(parser):
        device = str(pick_device(args.device))
        results = {}
        for task in tqdm(tasks, desc="benchmark", unit="model", file=sys.stderr, disable=not sys.stderr.isatty()):
            trials, backend = compare_with_plain_eager(task, args.folds, args.batch_size, device, args.trials,
                                                       args.min_time, args.precision, args.backend)
            results[task] = medians(trials)

    names = list(next(iter(results.values())))
    lines = [f"Images/sec, batch {args.batch_size}, {device}; plain eager: fp32, NCHW, whole batch; "
             f"default path: {backend}, {args.precision}, chunks tuned; median of {args.trials} interleaved trials.", "",
             "| Model | " + " | ".join(names) + " | default f=1 / plain | "
             + " | ".join(f"{n} / plain" for n in names[2:]) + " |",
             "|---|" + "---:|" * (2 * len(names) - 1)]
    ratios = {n: [] for n in names[1:]}
    for task, speed in results.items():
        over_plain = speedups(speed, base="plain eager")
        for n in names[1:]:
            ratios[n].append(over_plain[n])
        lines.append(f"| {task} | " + " | ".join(f"{speed[n]:,.0f}" for n in names) + " | "
                     + " | ".join(f"{over_plain[n]:.2f}x" for n in names[1:]) + " |")
    lines.append("")
    for n in names[1:]:
        lines.append(f"Median over models of {n} / plain eager original: {statistics.median(ratios[n]):.2f}x")
    for n in names[2:]:
        wins = sum(results[t][n] > results[t]["default f=1"] for t in results)
        lines.append(f"{n} beats default f=1 on {wins} of {len(results)} models")
    print_text(parser, lines, args.out and out_paths(args.out, ["md"])["md"])


if __name__ == "__main__":
    run_command(main)
