"""Accuracy of folded models on the real-image benchmark (datasets/real.py): results/accuracy/real.md and .csv.

For every benchmark task, seed and fold, the original (f=1) and its distilled students at f = 2, 3, 4 trained with
train.py's defaults, that is `--recipe distill --epochs E` alone (E: the task's f=1 epochs; the students get the
recipe's budget of them): as a config-folder task (real/<task>, the game CNN) and, with --model_file, as a user's
own CNN on the same images (train.py --model_file --data). Training flags after the others (e.g. --shift 4) change
every run: the table says so. A rerun skips finished runs and resumes unfinished ones.

    pip install -r requirements-real.txt && python3 util/make_real_tasks.py /tmp/real
    python3 util/real_table.py runs/real --benchmark /tmp/real --out results/accuracy/real --seeds 19 20 21 \\
        --model_file docs/examples/real_models.py

The gap is f=1's test top-1 minus the student's, in points, per seed; the seconds are training seconds without
evaluation (a consistent student's teacher passes included, cached logits' one pass not); x f=1 is the student's
over its own seed's original's.
"""
import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from config import tasks as registry
from datasets import DataMissing
from datasets.real import TASK_PREFIX, TASKS
from util.core.cli import add_out_arg, markdown_table, one_line_errors, run_command, write_table
from util.core.device import cpu_name
from util.train.flags import options_from_args, spec_settings, training_flags, user_task_from_args
from util.train.sweep import run_result, sweep
from util.train.trainer import error_message

FOLDS = (2, 3, 4)
COLUMNS = ["task", "path", "fold", "seed", "epochs", "f1_test_top1", "test_top1", "gap", "worst_slot_test_top1",
           "train_seconds", "f1_train_seconds", "seconds_over_f1", "precision"]
PATHS = {"config": "config folder (game CNN)", "own": "--model_file"}


def use_benchmark(bench):
    """Add the benchmark's task folders to the registry ($FOLDEDCNNS_TASKS)."""
    folders = [str(Path(bench, "tasks").resolve()),
               *filter(None, os.environ.get(registry.TASKS_ENV, "").split(os.pathsep))]
    os.environ[registry.TASKS_ENV] = os.pathsep.join(dict.fromkeys(folders))
    registry.all_tasks.cache_clear()


def run_flags(args, task, seed, own):
    """The training flags of one task's runs: train.py's defaults but the recipe, the original's epochs and the seed
    (and the benchmark's data), then any flags given after the others."""
    data = Path(args.benchmark, "data", TASK_PREFIX, task.name)
    model_file = f"{args.model_file}:{task.name}"
    where = ["--model_file", model_file, "--data", str(data), "--name", f"{task.name}-own"] if own else \
        ["--data_root", str(Path(args.benchmark, "data"))]
    return training_flags().parse_args(["--recipe", "distill", "--epochs", str(task.epochs), "--seed", str(seed),
                                        *where, *args.train_flags])


def train_task(args, task, seed, own):
    """Train one task's original and students at `seed` (finished runs skipped); returns {fold: result.json}."""
    run = run_flags(args, task, seed, own)
    dataset = user_task_from_args(argparse.Namespace(**{**vars(run), "folds": [1, *args.folds], "input_shape": None}))\
        if own else TASK_PREFIX + task.name
    root = Path(args.savedir) / f"seed{seed}" / ("own" if own else "config")
    sweep(root, [dataset], [1, *args.folds], {**spec_settings(run), "student_epochs": None}, options_from_args(run))
    return {fold: run_result(root, dataset, fold, "distill" if fold > 1 else "paper") for fold in [1, *args.folds]}


def table_rows(task, path, seed, results):
    """COLUMNS rows of one task's sweep (`results`: {fold: result.json})."""
    original = results[1]
    return [{"task": task.name, "path": path, "fold": fold, "seed": seed, "epochs": r["epochs"],
             "f1_test_top1": original["test_top1"], "test_top1": r["test_top1"],
             "gap": 100 * (original["test_top1"] - r["test_top1"]),
             "worst_slot_test_top1": r.get("worst_slot_test_top1", r["test_top1"]),
             "train_seconds": r["train_seconds"], "f1_train_seconds": original["train_seconds"],
             "seconds_over_f1": r["train_seconds"] / original["train_seconds"], "precision": r.get("precision")}
            for fold, r in sorted(results.items()) if fold > 1]


def summary(frame):
    """Per (task, path, fold): the gap's mean, range and seeds, the worst slot, the seconds' ratio."""
    rows = []
    for (task, path, fold), runs in frame.groupby(["task", "path", "fold"], sort=False):
        gaps = ", ".join(f"{g:.1f}" for g in runs.gap)
        rows.append([task, PATHS[path], fold, len(runs), f"{runs.f1_test_top1.mean():.4f}",
                     f"{runs.test_top1.mean():.4f}",
                     f"**{runs.gap.mean():.1f}**", gaps, f"{runs.worst_slot_test_top1.min():.4f}",
                     f"{runs.seconds_over_f1.mean():.2f} ({runs.seconds_over_f1.min():.2f}-"
                     f"{runs.seconds_over_f1.max():.2f})"])
    return rows


def markdown(frame, args, command, minutes):
    holdout = [t.name for t in TASKS.values() if t.holdout]
    lines = [f"# Folded models on real images ({cpu_name()}, {os.cpu_count()} cores)", "",
             f"Command: `{command}` ({minutes:.0f} min this invocation; a rerun skips finished runs). Each task's "
             "original (f=1) trains its benchmark epochs with the paper's game protocol; its students train with "
             "`--recipe distill` at the recipe's budget of those epochs"
             + (f", with `{' '.join(args.train_flags)}`" if args.train_flags else "") + ". Precision: "
             f"{', '.join(sorted(set(frame.precision.dropna())))} (students), fp32 (originals). Gap = f=1's test top-1 "
             "minus the student's, in points, per seed; worst slot = the lowest test top-1 of a position in the "
             "folded group over the seeds; x f=1 = the student's training seconds over its original's (mean, "
             "range)." + (f" `{', '.join(holdout)}` is the hold-out." if holdout else ""), "",
             *markdown_table(["task", "path", "f", "seeds", "f=1 top-1", "student top-1", "mean gap", "gaps",
                              "worst slot", "x f=1"], summary(frame)), ""]
    return "\n".join(lines)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="folder of the runs (SAVEDIR/seed<N>/{config,own}/...)")
    parser.add_argument("--benchmark", required=True, metavar="DIR", help="what util/make_real_tasks.py wrote")
    add_out_arg(parser, ["csv", "md"], required=True)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=[t for t in TASKS if not TASKS[t].holdout],
                        metavar="TASK", help=f"of {', '.join(TASKS)} (default: all but the hold-out)")
    parser.add_argument("--folds", nargs="+", type=int, choices=FOLDS, default=list(FOLDS),
                        help="the students' folds (default 2 3 4; f=1 always trains)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[19], help="one run per seed (default 19)")
    parser.add_argument("--model_file", default=None, metavar="FILE.py",
                        help="also train your CNNs on every task's images (train.py --model_file FILE.py:TASK, a "
                             "function per task named as the task: docs/examples/real_models.py)")
    parser.add_argument("--no_config", action="store_true", help="only the --model_file path")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args, args.train_flags = parser.parse_known_args(argv)
    with one_line_errors(parser):
        if not Path(args.benchmark, "tasks").is_dir():
            raise ValueError(f"--benchmark {args.benchmark} holds no tasks/: write it with util/make_real_tasks.py "
                             f"{args.benchmark}")
        training_flags().parse_args(args.train_flags)  # unknown flags: one line now, not after hours of training
        use_benchmark(args.benchmark)
    paths = ([] if args.no_config else ["config"]) + (["own"] if args.model_file else [])
    start, rows = time.perf_counter(), []
    with one_line_errors(parser, (ValueError, DataMissing, FloatingPointError), error_message):
        for seed in args.seeds:
            for name in args.tasks:
                for path in paths:
                    results = train_task(args, TASKS[name], seed, path == "own")
                    rows += table_rows(TASKS[name], path, seed, results)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    command = shlex.join(["python3", "util/real_table.py", *(argv if argv is not None else sys.argv[1:])])
    write_table(args.out, frame, markdown(frame, args, command, (time.perf_counter() - start) / 60))


if __name__ == "__main__":
    run_command(main, "every finished run is kept in SAVEDIR: run the same command again to resume")
