"""Plot test top-1 against training seconds for finished runs: how fast each recipe converges.

Each RUN is a run directory (train.py's or fold_trainer.py's), optionally labelled as DIR=LABEL; runs of one task
share a panel (the task comes from the run's result.json). The x axis is the training seconds so far at the end of
each epoch (stats/train_seconds.txt; for a run written before that file existed, its result.json's seconds spread
evenly over its epochs, and the legend says so):

    python3 util/accuracy_curves.py runs/sot/timer3/fold1/multiplier1/none=f=1 \\
        runs/sot/timer3/fold4/multiplier2/distill=distill --out curves.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from util.core.cli import one_line_errors, run_command
from util.core.device import cpu_name


def read_numbers(path):
    return [float(line) for line in path.read_text().split()]


def curve(run_dir):
    """(task, fold, seconds per epoch end, test top-1 per epoch, seconds spread evenly?) of a finished run."""
    run_dir = Path(run_dir)
    result_path, top1_path = run_dir / "result.json", run_dir / "stats" / "test_top1.txt"
    if not result_path.is_file() or not top1_path.is_file():
        raise ValueError(f"{run_dir} is not a finished run (no result.json or stats/test_top1.txt): pass a run "
                         "directory that training wrote")
    result = json.loads(result_path.read_text())
    top1 = read_numbers(top1_path)
    seconds_path = run_dir / "stats" / "train_seconds.txt"
    if seconds_path.is_file():
        return result["dataset"], result["fold"], read_numbers(seconds_path), top1, False
    per_epoch = result["train_seconds"] / max(len(top1), 1)
    return result["dataset"], result["fold"], [per_epoch * (i + 1) for i in range(len(top1))], top1, True


def parse_run(text):
    """DIR or DIR=LABEL -> (DIR, LABEL or None); a label may hold '=' (f=1), the directory is the part before it."""
    for i, char in enumerate(text):
        if char == "=" and Path(text[:i]).is_dir():
            return text[:i], text[i + 1:]
    return text, None


def plot(runs, out, title):
    """One panel per task; one line per run (test top-1 at each epoch's end against training seconds)."""
    curves = [(label, *curve(path)) for path, label in runs]
    tasks = list(dict.fromkeys(c[1] for c in curves))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label, _, fold, seconds, top1, spread in (c for c in curves if c[1] == task):
            name = (label or f"f={fold}") + (" (seconds spread evenly)" if spread else "")
            ax.plot(seconds, top1, marker=".", label=name)
        ax.set(title=task.removeprefix("synthetic-"), xlabel="training seconds (without evaluation)",
               ylabel="test top-1", ylim=(0, 1.02), xlim=(0, None))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return len(curves), len(tasks)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN[=LABEL]", help="finished run directories, each with a label")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default=None, help=f"default: test top-1 against training seconds on {cpu_name()}")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with one_line_errors(parser, (ValueError, OSError)):
        n, tasks = plot([parse_run(r) for r in args.runs], args.out,
                        args.title or f"Test top-1 against training seconds ({cpu_name()})")
    print(f"wrote {args.out}: {n} runs of {tasks} task(s)")


if __name__ == "__main__":
    run_command(main)
