"""Run the paper's training experiments: every task, f=1 first, then f = 2, 3, 4.

Each (dataset, fold) trains with fold_trainer.py's protocol into
`savedir/<dataset>/fold<f>/multiplier<m>/<none|fold|distill>/`. Re-running the same command skips finished
runs and resumes unfinished ones from their last checkpoint. A task whose data is missing is
skipped with a line saying where the data must be. At the end a summary is printed and written to
`savedir/summary.csv` (after the rows an earlier command wrote there for other runs). `--recipe distill` trains the folded models as students of the f=1 model
instead of with the paper's recipe (docs/protocol.md, section 8), for the recipe's budget: `--epochs` is the
original's, and the students train a multiple of it (3x; 1.2x for NoScope), cut to the epochs that fit in 1.8x the
original's training seconds (timed when a student starts), unless `--student_epochs` says otherwise. `--demo` trains generated stand-in
data on a CPU in a few minutes and compares the folded models' accuracy and throughput with f=1's.

Your own CNN on your own images instead of the registry's tasks (docs/own_cnn.md):
    python3 train.py runs --model_file my_models.py:build --data my_images --folds 1 2 3 4
trains build()'s model at f=1 and its FoldedCNNs (models.fold_cnn) as its students (--recipe distill by default)
on the ImageFolder my_images/{train,val,test}/<class>/, into runs/my_images/...; --weights ORIGINAL.pth uses your
trained original instead of training f=1.

Under `torchrun` every run trains with DistributedDataParallel (see fold_trainer.py). `--shard I/N`
runs the I-th of N disjoint slices of the sweep, so that N independent jobs run the whole of it;
re-running without --shard afterwards finds every run finished and writes the full summary.csv.
"""
import argparse
import json
from pathlib import Path

from config.tasks import SYNTHETIC, get_task, task_names
from datasets import DataMissing
from util.core.cli import one_line_errors, positive_int, run_command
from util.train import distributed
from util.train.flags import options_from_args, spec_settings, training_flags, user_task_from_args
from util.train.sweep import DEMO, folding_gains, plan, shard, train_units, write_summary
from util.train.trainer import error_message, per_rank_batch


def shard_spec(text):
    """--shard I/N: the I-th (1-based) of N slices."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N, for example 2/8") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be between 1 and N, for example 2/8")
    return index, count


def get_args_parser(add_help=True):
    """The shared training flags plus the sweep's own."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[training_flags()], add_help=add_help)
    parser.add_argument("savedir", help="folder for every run's checkpoints, stats and summary.csv")
    parser.add_argument("--datasets", nargs="+", default=None, metavar="DATASET",
                        help=f"tasks to train (default: all): {', '.join(task_names())}; "
                             f"{SYNTHETIC}<task> for generated stand-in data (game and NoScope tasks)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 2, 3, 4], help="default: 1 2 3 4")
    parser.add_argument("--shard", type=shard_spec, default=None, metavar="I/N",
                        help="run only the I-th of N disjoint slices of the (dataset, fold) sweep (for N "
                             "independent jobs); writes summary_shardIofN.csv")
    parser.add_argument("--student_epochs", type=positive_int, default=None,
                        help="epochs of --recipe distill's folded students (default: the recipe's budget, a multiple "
                             "of the original's --epochs: 3x, 1.2x for NoScope, cut to those that fit in 1.8x its "
                             "training seconds, timed when a student starts; --dry_run shows each run's cap)")
    parser.add_argument("--demo", action="store_true",
                        help="train generated game and NoScope stand-ins at f=1 and f=4 (f=4 with --recipe "
                             "distill unless --recipe is given; minutes on a CPU) and compare accuracy and throughput")
    parser.set_defaults(recipe=None)  # paper, or distill for the demo
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.model_file and (args.datasets or args.demo):
        parser.error("--model_file trains your own CNN on --data: drop --datasets and --demo")
    with one_line_errors(parser):
        own = user_task_from_args(args)
    args.recipe = args.recipe or (DEMO["recipe"] if args.demo or own else "paper")
    if args.demo:
        args.datasets = args.datasets or DEMO["datasets"]
        args.folds = DEMO["folds"] if args.folds == parser.get_default("folds") else args.folds
    baselines = [name for name in task_names("game") if get_task(name).compound_scaling_baseline]
    datasets = [own] if own else args.datasets or (baselines if args.mode == "efficientnet" else task_names())
    folds = sorted(set(args.folds))
    options = options_from_args(args)
    with one_line_errors(parser):
        if args.continue_from_file and (len(datasets) > 1 or len(folds) > 1):
            raise ValueError("--continue_from_file resumes one run: select one dataset and one fold")
        settings = {**spec_settings(args), "student_epochs": args.student_epochs}
        units = plan(args.savedir, datasets, folds, settings, args.demo, need_teacher=not args.dry_run)
        if args.shard:
            units = shard(units, *args.shard)
        if args.dry_run:  # every run's spec, one JSON line each; nothing is read, written or trained
            print("\n".join(json.dumps(spec.describe()) for _, specs in units for spec in specs))
            return
        _, world, _ = distributed.setup(args.device)
        for spec in (spec for _, specs in units for spec in specs):
            per_rank_batch(spec.batch_size, spec.images_per_input, world)
        try:
            Path(args.savedir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot write to {args.savedir}: {e.strerror}; choose a writable savedir") from None

    summary_file = Path(args.savedir) / "summary.csv"
    if args.shard:
        summary_file = summary_file.with_name(f"summary_shard{args.shard[0]}of{args.shard[1]}.csv")
        distributed.print0(f"shard {args.shard[0]}/{args.shard[1]}: " + (", ".join(
            f"{d} fold {'/'.join(str(s.fold) for s in specs)}" for d, specs in units)
            or "nothing to run (fewer runs than shards)"))
    with one_line_errors(parser, (ValueError, DataMissing, FloatingPointError), error_message):
        rows, ready, missing = train_units(units, options)
    if missing and not ready:
        parser.exit(2, "error: no data for any selected task (see the lines above). Put the data where they say, "
                       "or try the stand-in demo: python3 train.py runs --demo\n")
    summary = write_summary(rows, summary_file)
    if rows:
        distributed.print0("\nSummary (test top-1 at the best validation epoch):")
        distributed.print0(summary.drop(columns="note").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        for note in summary["note"].dropna():
            distributed.print0("warning: " + note)
    distributed.print0(f"written to {summary_file}")
    if args.demo and rows and distributed.is_main():
        print(folding_gains(summary, args.device), flush=True)
    distributed.cleanup()


if __name__ == "__main__":
    run_command(main, "every finished run, and each unfinished run's last finished epoch (current.pth), are kept in "
                      "the savedir: run the same command again to resume", "run the same command to resume")
