"""Accuracy of both recipes on every synthetic stand-in: the table of results/accuracy/.

Trains the 6 game and 4 NoScope stand-ins at f = 1 (once: the reference and the distill recipe's
teacher), then at f = 2, 3, 4 with --recipe paper and --recipe distill (--recipes), at one epoch budget per
family (the distilled students the recipe's, a multiple of it: util.train.protocol.student_epochs, as train.py
gives them; --game_student_epochs, --noscope_student_epochs and --student_images change it), through train.py's
sweep (util.train.sweep: a rerun skips finished runs and resumes unfinished ones). It writes OUT.csv and OUT.md: test top-1 per task, fold and
recipe, the gap to f=1, the worst slot, the training seconds and their ratio to f=1's, with medians over the tasks
and the CPU they ran on. With --seeds, every run is repeated per seed (seed 19 in SAVEDIR, others in SAVEDIR/seedN)
and the table gives each folded run's spread over the seeds.

    python3 util/accuracy_table.py runs/accuracy --out results/accuracy/table
    python3 util/accuracy_table.py runs/accuracy --out results/accuracy/seeds --tasks TASK... --folds 4 \\
        --recipes distill --seeds 19 20 21
"""
import argparse
import itertools
import math
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from config.tasks import SYNTHETIC, get_task, resolve_dataset, task_names
from datasets import DataMissing, load_splits
from util.core.cli import add_out_arg, markdown_table, one_line_errors, positive_int, run_command, write_table
from util.core.device import cpu_name
from util.train.flags import options_from_args, spec_settings, training_flags
from util.train.protocol import DISTILL, student_epochs
from util.train.sweep import run_result, sweep
from util.train.trainer import error_message

FAMILIES = ("game", "noscope")
FOLDS = (2, 3, 4)
RECIPES = ("paper", "distill")
STAND_INS = [name for family in FAMILIES for name in task_names(family)]
COLUMNS = ["dataset", "fold", "recipe", "epochs", "test_top1", "gap", "worst_slot_test_top1", "train_seconds",
           "seconds_over_f1", "train_images_per_sec", "seed"]
SEED = training_flags().get_default("seed")  # the trainer's default seed: its runs live in SAVEDIR itself


def seed_dir(savedir, seed):
    """Where the runs of `seed` live: SAVEDIR for the default seed, SAVEDIR/seedN for the others."""
    return Path(savedir) if seed == SEED else Path(savedir) / f"seed{seed}"


def stand_ins(tasks, family):
    """The synthetic datasets of `family`'s tasks among `tasks`."""
    return [SYNTHETIC + name for name in task_names(family) if name in tasks]


def train_family(args, family, seed):
    """Train one family's stand-ins (of --tasks) at `seed`, one dataset at a time: its f=1 run, then its folded runs
    (--folds) of each recipe, so that a folded run's seconds and its original's are taken minutes apart (a shared VM's
    speed drifts by 15-25% over a longer sweep: results/accuracy/choices.md, round 11)."""
    datasets = stand_ins(args.tasks, family)
    if not datasets:
        return
    epochs = getattr(args, f"{family}_epochs")
    lr = getattr(args, f"{family}_lr")
    paper_lr = ["--lr", str(lr)] if lr else []  # the paper's lr is tuned for its 1500 epochs
    runs = {"paper": (args.folds, epochs, ["--recipe", "paper", *paper_lr]),
            "distill": (args.folds, epochs, ["--recipe", "distill"])}  # the students' epochs: the recipe's budget
    parsed = [(folds, training_flags().parse_args([*args.train_flags, "--epochs", str(budget), "--seed", str(seed),
                                                  *flags]))
              for folds, budget, flags in [([1], epochs, paper_lr)] + [runs[r] for r in args.recipes]]
    for dataset in datasets:
        for folds, run in parsed:
            students = table_student_epochs(args, dataset, run, family) if run.recipe == "distill" else None
            settings = {**spec_settings(run), "student_epochs": students}
            sweep(seed_dir(args.savedir, seed), [dataset], folds, settings, options_from_args(run))


def table_student_epochs(args, dataset, run, family):
    """The epochs of `dataset`'s distilled students: None (the recipe's budget, as train.py gives it), unless
    --game/noscope_student_epochs give them or --student_images cuts them where the training split is so large that
    those images come first (the table of round 13 did: results/accuracy/choices.md). Called after the f=1 run, which
    made any stand-in data."""
    given = getattr(args, f"{family}_student_epochs")
    if not args.student_images:
        return given
    epochs = given or student_epochs(resolve_dataset(dataset)[0], run.epochs)
    options = options_from_args(run)
    train = load_splits(dataset, data_dir=options.data_dir, data_root=options.data_root, cache=False)["train"]
    return max(1, min(epochs, math.ceil(args.student_images / len(train))))


def finished(savedir, dataset, fold, recipe="paper"):
    """The run's result.json, or None if it has not finished."""
    try:
        return run_result(savedir, dataset, fold, recipe)
    except FileNotFoundError:
        return None


def rows_of(savedir, datasets, recipes=RECIPES, folds=FOLDS, seeds=(SEED,)):
    """One row per finished run of `datasets` (a task without its f=1 run has none); returns (rows, runs missing)."""
    rows, missing = [], 0
    for seed, dataset in itertools.product(seeds, datasets):
        original = finished(seed_dir(savedir, seed), dataset, 1)
        runs = [(1, "original", original)] + [(f, r, finished(seed_dir(savedir, seed), dataset, f, r))
                                              for f in folds for r in recipes]
        missing += sum(result is None or original is None for _, _, result in runs)
        for fold, recipe, result in runs:
            if result is None or original is None:
                continue
            rows.append({"dataset": dataset.removeprefix(SYNTHETIC), "fold": fold, "recipe": recipe,
                         "epochs": result["epochs"], "test_top1": result["test_top1"],
                         "gap": original["test_top1"] - result["test_top1"],
                         "worst_slot_test_top1": result["worst_slot_test_top1"],
                         "train_seconds": result["train_seconds"],
                         "seconds_over_f1": result["train_seconds"] / original["train_seconds"],
                         "train_images_per_sec": result["train_images_per_sec"], "seed": seed})
    return rows, missing


def gap_text(gap):
    return "-" if pd.isna(gap) else f"{gap:.1f}"


def lr_text(lr):
    return f"{lr:g}" if lr else "the paper's"


def budget_text(args):
    """How the table's distilled students were budgeted, in words."""
    def family(name, given, epochs):
        return (f"{given} ({name})" if given else
                f"the recipe's {DISTILL[name]['student_epochs']:g}x ({name}: "
                f"{student_epochs(get_task(task_names(name)[0]), epochs)})")
    text = " and ".join([family("game", args.game_student_epochs, args.game_epochs),
                         family("noscope", args.noscope_student_epochs, args.noscope_epochs)]) + " epochs"
    if args.student_images:
        text += f" (or as many as hold {args.student_images:,} training images, if fewer)"
    return text


def markdown(frame, args, command, minutes, missing=0):
    seeds = ", ".join(map(str, args.seeds))
    lines = [f"# Folded accuracy by recipe on the synthetic stand-ins ({cpu_name()}, {os.cpu_count()} cores)", "",
             f"Command: `{command}`. Training time of all runs (without evaluation): "
             f"{frame.train_seconds.sum() / 60:.0f} min; this invocation took {minutes:.0f} min (a rerun skips "
             "finished runs)." + (f" **{missing} of the runs had not finished when this table was written; they are "
                                  "left out.**" if missing else ""), "",
             f"Budget: {args.game_epochs} epochs for game tasks, {args.noscope_epochs} for NoScope at f=1 and with "
             f"--recipe paper, {budget_text(args)} with --recipe distill; "
             "f=1 and --recipe paper "
             f"with the paper's settings except the lr: {lr_text(args.game_lr)} (game), "
             f"{lr_text(args.noscope_lr)} (NoScope); --recipe distill at its own settings (docs/protocol.md, "
             f"section 8). Test top-1 at the best validation epoch, one run each per seed ({seeds}); "
             "gap = f=1's test "
             "top-1 minus the folded model's, in points; worst slot = the lowest test top-1 of a position in the "
             "folded group; train s = training seconds (without evaluation); x f=1 = train s over the f=1 run's "
             "(of the same seed); "
             "img/s = training images per second "
             "(a curriculum trains on fewer images in early epochs, so compare the recipes' speed here).", ""]
    if len(args.seeds) > 1:
        lines += [f"The medians are over seed {args.seeds[0]}'s runs; the last section gives the spread over "
                  f"seeds {seeds}.", ""]
    lines += ["## Median gap to f=1 over the tasks (points)", ""]
    frame = frame.assign(family=[("noscope" if d.startswith("noscope") else "game") for d in frame.dataset])
    first = frame[frame.seed == args.seeds[0]]
    medians = []
    for family in ("game", "noscope", "all"):
        part = first if family == "all" else first[first.family == family]
        for recipe in args.recipes:
            gaps = [100 * part[(part.recipe == recipe) & (part.fold == f)].gap.median() for f in args.folds]
            worst = 100 * part[(part.recipe == recipe) & (part.fold == max(args.folds))].gap.max()
            medians.append([family, recipe, *(gap_text(g) for g in [*gaps, worst])])
    lines += markdown_table(["family", "recipe", *(f"f={f}" for f in args.folds), f"worst at f={max(args.folds)}"],
                            medians)
    lines += ["", "## Every run", ""] + markdown_table(
        ["task", "f", "recipe", "seed", "epochs", "test top-1", "gap (pts)", "worst slot", "train s", "x f=1", "img/s"],
        [[r.dataset, r.fold, r.recipe, r.seed, r.epochs, f"{r.test_top1:.4f}", f"{100 * r.gap:.1f}",
          f"{r.worst_slot_test_top1:.4f}", f"{r.train_seconds:.0f}", f"{r.seconds_over_f1:.2f}",
          f"{r.train_images_per_sec:.0f}"] for r in frame.itertuples()])
    if len(args.seeds) > 1:
        lines += ["", "## Spread over the seeds (gap to each seed's own f=1, points)", ""] + markdown_table(
            ["task", "f", "recipe", "seeds", "gaps", "mean", "worst", "x f=1 (max)"],
            [[task, fold, recipe, len(runs), ", ".join(f"{100 * g:.1f}" for g in runs.gap), gap_text(runs.gap.mean() * 100),
              gap_text(runs.gap.max() * 100), f"{runs.seconds_over_f1.max():.2f}"]
             for (task, fold, recipe), runs in frame[frame.fold > 1].groupby(["dataset", "fold", "recipe"], sort=False)])
    return "\n".join(lines) + "\n"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="folder of the sweep's runs (train.py's layout)")
    add_out_arg(parser, ["csv", "md"], required=True)
    parser.add_argument("--tasks", nargs="+", choices=STAND_INS, default=STAND_INS, metavar="TASK",
                        help="default: every game and NoScope task")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES),
                        help="the recipes of the folded runs (default both)")
    parser.add_argument("--game_student_epochs", type=positive_int, default=None,
                        help="epochs of the game tasks' folded runs of --recipe distill (default: the recipe's "
                             "budget, as train.py gives it: 3x --game_epochs, cut to what fits in 1.8x the "
                             "original's seconds)")
    parser.add_argument("--noscope_student_epochs", type=positive_int, default=None,
                        help="epochs of the NoScope tasks' folded runs of --recipe distill (default: the recipe's "
                             "budget, as train.py gives it: 1.2x --noscope_epochs)")
    parser.add_argument("--student_images", type=positive_int, default=None, metavar="N",
                        help="a distilled student trains fewer epochs where its training split is so large that N "
                             "images come first (default: no cut, as train.py; the table of round 13 in "
                             "results/accuracy/choices.md used 1500000, which cut goldnumber-int to 91 epochs)")
    parser.add_argument("--folds", nargs="+", type=int, choices=FOLDS, default=list(FOLDS),
                        help="the folds of the folded runs (default 2 3 4; f=1 always trains)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[SEED],
                        help="train every run once per seed (default 19; others in SAVEDIR/seedN); the medians are "
                             "the first seed's, and a last section gives the spread over the seeds")
    parser.add_argument("--no_train", action="store_true",
                        help="write the table from the finished runs in SAVEDIR without training (the rest is left out)")
    parser.add_argument("--game_epochs", type=positive_int, default=40,
                        help="epochs of game f=1 and --recipe paper runs (default 40)")
    parser.add_argument("--noscope_epochs", type=positive_int, default=10,
                        help="epochs of NoScope f=1 and --recipe paper runs (default 10)")
    parser.add_argument("--game_lr", type=float, default=3e-4,
                        help="lr of game f=1 and --recipe paper runs (default 3e-4, as the demo)")
    parser.add_argument("--noscope_lr", type=float, default=None,
                        help="lr of NoScope f=1 and --recipe paper runs (default: the paper's)")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args, args.train_flags = parser.parse_known_args(argv)  # the rest: training flags (--data_dir, --device, ...)
    tic = time.perf_counter()
    datasets = [d for family in FAMILIES for d in stand_ins(args.tasks, family)]
    if not args.no_train:
        with one_line_errors(parser, (ValueError, DataMissing, FloatingPointError), error_message):
            for seed, family in itertools.product(args.seeds, FAMILIES):
                train_family(args, family, seed)
    rows, missing = rows_of(args.savedir, datasets, args.recipes, args.folds, args.seeds)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    command = shlex.join(["python3", "util/accuracy_table.py", *(sys.argv[1:] if argv is None else argv)])
    text = markdown(frame, args, command, (time.perf_counter() - tic) / 60, missing)
    write_table(args.out, frame, text)


if __name__ == "__main__":
    run_command(main)
