"""Measure the distill recipe's choices: loss, temperature, learning rate, schedule and curriculum.

For each dataset it trains the original (f=1) once with train.py (the teacher), then one folded
student per variant, each changing one setting of the recipe. It writes a CSV and a markdown table
(test top-1, its gap to f=1, the worst slot, seconds per epoch) and names the CPU they ran on:

    python3 util/recipe_choices.py runs/choices --datasets synthetic-sot/coin_count-digits_3_4-v2 \\
        --fold 4 --epochs 60 --out results/accuracy/choices
"""
import argparse
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from config.tasks import resolve_dataset
from datasets import DataMissing
from util.core.cli import add_out_arg, markdown_table, one_line_errors, positive_int, run_command, write_table
from util.core.device import cpu_name
from util.train.flags import options_from_args, spec_settings, training_flags
from util.train.protocol import DISTILL, student_epochs
from util.train.spec import build_spec, run_dir
from util.train.sweep import run_result, sweep
from util.train.trainer import error_message

# Each variant changes settings of the recipe (BASE); "paper" is the paper's recipe at the same epochs.
VARIANTS = {
    "recipe": [],
    "loss mse": ["--distill_loss", "mse"],
    "loss mse+ce": ["--distill_loss", "mse+ce"],
    "loss kl+ce": ["--distill_loss", "kl+ce"],
    "temperature 1": ["--temperature", "1"],
    "temperature 8": ["--temperature", "8"],
    "lr 3e-4": ["--lr", "3e-4"],
    "lr 3e-3": ["--lr", "3e-3"],
    "schedule constant": ["--lr_schedule", "constant"],
    "schedule cosine": ["--lr_schedule", "cosine"],
    "schedule onecycle": ["--lr_schedule", "onecycle"],
    "curriculum on": ["--curriculum", "on"],
    "batch 64": ["--batch_size", "64"],
    "batch 128": ["--batch_size", "128"],
    "batch 128 lr 3e-3": ["--batch_size", "128", "--lr", "3e-3"],
    "batch 128 lr 2e-3": ["--batch_size", "128", "--lr", "2e-3"],
    "shift 0": ["--shift", "0"],
    "shift 2": ["--shift", "2"],
    "shift 4": ["--shift", "4"],
    "shift 8": ["--shift", "8"],
    "shift 12": ["--shift", "12"],
    "repeat 0.5": ["--repeat", "0.5"],
    "mixup 0.2": ["--mixup", "0.2"],
    "schedule constant temperature 1": ["--lr_schedule", "constant", "--temperature", "1"],
    "rmsprop": ["--optimizer", "rmsprop"],
    "rmsprop schedule constant": ["--optimizer", "rmsprop", "--lr_schedule", "constant"],
    "rmsprop schedule constant temperature 1": ["--optimizer", "rmsprop", "--lr_schedule", "constant",
                                                "--temperature", "1"],
    "paper": None,
}
COLUMNS = ["dataset", "fold", "variant", "epochs", "teacher_test_top1", "test_top1", "gap", "worst_slot_test_top1",
           "seconds_per_epoch", "train_images_per_sec"]


def measure(args):
    """Train the teachers and every variant (finished runs are skipped on a rerun); returns the table's rows."""
    rows = []
    for dataset in args.datasets:
        teachers = Path(args.savedir) / "teacher"
        train(teachers, dataset, 1, [*args.common, "--epochs", str(args.teacher_epochs),
                                     *(["--lr", str(args.teacher_lr)] if args.teacher_lr else [])])
        teacher = run_result(teachers, dataset, 1, "paper")
        teacher_pth = run_dir(teachers, build_spec(dataset, 1)) / "best.pth"
        epochs = args.epochs or student_epochs(resolve_dataset(dataset)[0], args.teacher_epochs)
        for name in args.variants:
            flags = VARIANTS[name]
            savedir = Path(args.savedir) / name.replace(" ", "_")
            recipe = ["--recipe", "paper"] if flags is None else ["--recipe", "distill", "--teacher", str(teacher_pth),
                                                                 *flags]
            train(savedir, dataset, args.fold, [*args.common, "--epochs", str(epochs), *recipe], epochs)
            result = run_result(savedir, dataset, args.fold, "paper" if flags is None else "distill")
            rows.append({"dataset": dataset, "fold": args.fold, "variant": name, "epochs": epochs,
                         "teacher_test_top1": teacher["test_top1"], "test_top1": result["test_top1"],
                         "gap": teacher["test_top1"] - result["test_top1"],
                         "worst_slot_test_top1": result["worst_slot_test_top1"],
                         "seconds_per_epoch": seconds_per_epoch(result),
                         "train_images_per_sec": result["train_images_per_sec"]})
    return rows


def train(root, dataset, fold, flags, epochs=None):
    """Train one run of the sweep in `root` with the training flags `flags` (skipped when finished); a distilled
    student trains `epochs` (None: the recipe's budget)."""
    run = training_flags().parse_args(flags)
    sweep(root, [dataset], [fold], {**spec_settings(run), "student_epochs": epochs}, options_from_args(run))


def seconds_per_epoch(result):
    """Training seconds per epoch (without evaluation) of a result.json."""
    return result["train_seconds"] / result["epochs"]


def describe(recipe):
    return (f"loss {recipe['loss']} at temperature {recipe['temperature']:g}, {recipe['optimizer']} at lr "
            f"{recipe['lr']:g}, {recipe['schedule']} schedule, curriculum {'on' if recipe['curriculum'] else 'off'}"
            + (f", images shifted by up to {recipe['shift']} pixels" if recipe.get("shift") else ""))


def markdown(frame, command):
    families = sorted({resolve_dataset(d)[0].family for d in frame.dataset})
    lines = [f"# Distill recipe choices ({cpu_name()}, {os.cpu_count()} cores)", "", f"Command: `{command}`", "",
             "Variant `recipe` is the distill recipe of the dataset's family (util.train.protocol.DISTILL): "
             + "; ".join(f"{family}: {describe(DISTILL[family])}" for family in families) + ". Every "
             "other variant changes the settings its name says; `paper` is the paper's recipe at the same epochs. "
             "One run each (seed 19). Test top-1 at the best validation epoch; gap = the f=1 teacher's test top-1 "
             "minus the student's, in points.", ""]
    lines += markdown_table(
        ["dataset", "f", "variant", "epochs", "test top-1", "gap (pts)", "worst slot", "s/epoch", "train images/s"],
        [[r.dataset, r.fold, r.variant, r.epochs, f"{r.test_top1:.4f}", f"{100 * r.gap:.1f}",
          f"{r.worst_slot_test_top1:.4f}", f"{r.seconds_per_epoch:.2f}", f"{r.train_images_per_sec:.0f}"]
         for r in frame.itertuples()])
    return "\n".join(lines) + "\n"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="folder for the teacher and every variant's runs")
    parser.add_argument("--datasets", nargs="+", required=True, metavar="DATASET", help="tasks (train.py's names)")
    parser.add_argument("--fold", type=positive_int, default=4, help="fold of the students (default 4)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="epochs of every student (default: the distill recipe's budget, a multiple of "
                             "--teacher_epochs, as train.py gives it)")
    parser.add_argument("--teacher_epochs", type=positive_int, required=True, help="epochs of the f=1 teacher")
    parser.add_argument("--teacher_lr", type=float, default=None, help="lr of the teacher (default: the paper's)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT",
                        help=f"default: all of {', '.join(map(repr, VARIANTS))}")
    add_out_arg(parser, ["csv", "md"], required=True)
    return parser


def main(argv=None):
    parser = get_args_parser()
    args, args.common = parser.parse_known_args(argv)  # the rest: training flags (--data_dir, --device, ...)
    with one_line_errors(parser, (ValueError, DataMissing, FloatingPointError, FileNotFoundError), error_message):
        frame = pd.DataFrame(measure(args), columns=COLUMNS)
    command = shlex.join(["python3", "util/recipe_choices.py", *(sys.argv[1:] if argv is None else argv)])
    write_table(args.out, frame, markdown(frame, command))


if __name__ == "__main__":
    run_command(main, "every finished run is kept in the savedir: run the same command again to train only the rest",
                "run the same command to train only the rest")
