"""Run the paper's training experiments: every task, f=1 first, then f = 2, 3, 4.

Each (dataset, fold) trains with fold_trainer.py's protocol into
`savedir/<dataset>/fold<f>/multiplier<m>/<none|fold|distill>/`. Re-running the same command skips finished
runs and resumes unfinished ones from their last checkpoint. A task whose data is missing is
skipped with a line saying where the data must be. At the end a summary is printed and written to
`savedir/summary.csv`. `--recipe distill` trains the folded models as students of the f=1 model
instead of with the paper's recipe (docs/protocol.md, section 8). `--demo` trains generated stand-in
data on a CPU in a few minutes and compares the folded models' accuracy and throughput with f=1's.

Under `torchrun` every run trains with DistributedDataParallel (see fold_trainer.py). `--shard I/N`
runs the I-th of N disjoint slices of the sweep, so that N independent jobs run the whole of it;
re-running without --shard afterwards finds every run finished and writes the full summary.csv.
"""
import argparse
import json
from pathlib import Path

import pandas as pd

import fold_trainer
from config.tasks import SPLITS, SYNTHETIC, get_task, resolve_dataset, task_names
from datasets import DataMissing, data_location
from datasets.loaders import how_to_get
from datasets.synthetic import make_game_dataset, make_noscope_video
from util.train import distributed
from util.core.cli import positive_int
from util.core.device import REPO, pick_device
from util.core.files import write_text_atomic
from util.measure.benchmark import compare_with_plain_eager
from datasets.noscope import split_from_video

MODEL_FILES = REPO / "model_files"
# test_top1 is at this project's best epoch (the most curriculum classes so far); authors_test_top1 at the
# authors' (the highest validation top-1 of any epoch): docs/protocol.md, section 7.
SUMMARY_COLUMNS = ["dataset", "fold", "mode", "recipe", "epochs", "best_val_top1", "test_top1", "worst_slot_test_top1",
                   "authors_best_val_top1", "authors_test_top1", "train_images_per_sec"]
SYNTHETIC_GAME_IMAGES = (150, 30, 30)  # per class, for train, val and test
SYNTHETIC_VIDEO_FRAMES = 8000  # noscope-coral's splits then hold 1000 frames each
SYNTHETIC_DATA_SEED = 0  # the stand-in data does not change with --seed, which seeds training
# The demo: a game task and a NoScope task (through the video pipeline) sized for a 2-core CPU, the folded
# models trained with --recipe distill. The paper trains for 1500 (game) and 50 (NoScope) epochs; folded
# models need more epochs than the original, so the demo gives f=4 more of them. The lr is that of f=1 (and of
# --recipe paper); distilled runs keep the recipe's.
DEMO = {"datasets": [SYNTHETIC + "sot/coin_count-digits_3_4-v2", SYNTHETIC + "noscope-coral"], "folds": [1, 4],
        "recipe": "distill",
        "game": {"epochs": {1: 20, 4: 120}, "lr": 3e-4},
        "noscope": {"epochs": {1: 10, 4: 10}, "lr": None}}


def run_dir(savedir, dataset, fold, multiplier, mode="folded", recipe="paper", align=1):
    """Where one (dataset, fold) run writes: savedir/<dataset>/fold<f>/multiplier<m>[-align<N>]/<none|fold|distill>
    (none: the original, shared by both recipes; distill: a folded run of --recipe distill; -align<N>: --align), or
    for the compound-scaled baseline savedir/<dataset>/efficientnet/phi<phi>."""
    if mode == "efficientnet":
        return Path(savedir) / dataset / "efficientnet" / f"phi{fold}"
    leaf = "none" if fold == 1 else "distill" if recipe == "distill" else "fold"
    widths = f"multiplier{multiplier:.4g}" + (f"-align{align}" if align > 1 else "")
    return Path(savedir) / dataset / f"fold{fold}" / widths / leaf


def folding_gains(summary, device, batch_size=1024):
    """Lines comparing each folded run of `summary` with its f=1 run: test top-1, the gap, and the images/sec of
    the folded CNN over the original's on this machine (the default inference path, a short measurement)."""
    device = pick_device(device)
    lines = [f"\nWhat folding buys here (test top-1; inference images/sec at batch {batch_size} on {device}):"]
    for dataset, runs in summary.groupby("dataset", sort=False):
        top1 = dict(zip(runs.fold, runs.test_top1))
        folds = [f for f in top1 if f > 1]
        if 1 not in top1 or not folds:
            continue
        task, _ = resolve_dataset(dataset)
        speeds, backend = compare_with_plain_eager(task.name, folds, batch_size, device, trials=3, min_time=0.3)
        for f in folds:
            gain = speeds[f"default f={f}"] / speeds["default f=1"]
            lines.append(f"  {dataset}: f={f} top-1 {top1[f]:.3f}, f=1 {top1[1]:.3f} ({100 * (top1[f] - top1[1]):+.1f} "
                         f"points), {gain:.2f}x the images/sec of f=1 ({backend})")
    return "\n".join(lines)


def run_result(savedir, dataset, fold, recipe="paper"):
    """The result.json of a finished (dataset, fold) run of a sweep in `savedir` (default multiplier sqrt(f))."""
    path = run_dir(savedir, dataset, fold, fold ** 0.5, recipe=recipe) / "result.json"
    return json.loads(path.read_text())


def teacher_path(dataset, args):
    """The distillation teacher: --teacher, else model_files/<dataset>/original/model.pth, else the authors'
    model_files/<dataset>/resnet18/model.t7, else this sweep's f=1."""
    candidates = [Path(args.teacher)] if args.teacher else [
        MODEL_FILES / dataset / "original" / "model.pth",
        MODEL_FILES / dataset / "resnet18" / "model.t7",
        run_dir(args.savedir, dataset, 1, 1.0) / "best.pth",
    ]
    for path in candidates:
        if path.exists():
            return path
    raise ValueError(f"{dataset}: folded training distils the original model, but no teacher was found at "
                     f"{' or '.join(map(str, candidates))}; train fold 1 first (--folds 1 ...) or pass --teacher")


def prepare_synthetic(dataset, args):
    """Generate a synthetic-<task> dataset where it is missing (always the same data: SYNTHETIC_DATA_SEED)."""
    task, _ = resolve_dataset(dataset)
    location = data_location(dataset, args.data_dir, args.data_root)
    if location.is_dir():
        return
    print(f"{dataset}: generating stand-in data in {location}", flush=True)
    if task.family == "game":
        make_game_dataset(task.name, location, per_class=SYNTHETIC_GAME_IMAGES, seed=SYNTHETIC_DATA_SEED)
    elif task.family == "noscope":
        source = Path(args.data_dir) / f"{dataset}-video"
        source.mkdir(parents=True, exist_ok=True)
        video, labels = make_noscope_video(task.name, source / "video.mp4", source / "labels.csv",
                                           n_frames=SYNTHETIC_VIDEO_FRAMES, seed=SYNTHETIC_DATA_SEED)
        split_from_video(dataset, location, labels, video)
    else:
        raise ValueError(f"{dataset}: there is no synthetic stand-in for {task.family} tasks; use {task.name}")


def data_ready(dataset, args):
    """None if `dataset`'s data is in place, else the one line saying where it must be and how to get it."""
    task, _ = resolve_dataset(dataset)
    location = data_location(dataset, args.data_dir, args.data_root)
    how = how_to_get(dataset, location)
    if task.family == "cifar":
        present = args.download or (location.is_dir() and any(location.iterdir()))
        return None if present else f"skipping {dataset}: no data at {location}; {how}"
    if not location.is_dir():
        return f"skipping {dataset}: no data at {location}; {how}"
    for split in SPLITS:
        folder = location / split
        if not folder.is_dir() or not any(folder.iterdir()):
            return f"skipping {dataset}: missing or empty split directory {folder}; {how}"
    return None


def resume_point(dataset, fold, savedir, run):
    """(result, None) for a finished run; else (None, the checkpoint to resume from, or None to start)."""
    result_file, current = savedir / "result.json", savedir / "current.pth"
    if run.continue_from_file:
        resume = run.continue_from_file
    elif result_file.exists() and json.loads(result_file.read_text())["epochs"] == run.epochs:
        print(f"{dataset} {fold_trainer.fold_name(run.mode)} {fold}: finished earlier, skipping ({savedir})", flush=True)
        return json.loads(result_file.read_text()), None
    else:
        resume = str(current) if current.exists() else None
    if resume:
        print(f"{dataset} {fold_trainer.fold_name(run.mode)} {fold}: resuming from {resume}", flush=True)
    else:
        print(f"{dataset} {fold_trainer.fold_name(run.mode)} {fold}: training {run.epochs} epochs into {savedir}", flush=True)
    return None, resume


def run_args(dataset, fold, args, need_teacher=True):
    """The fold_trainer arguments of one (dataset, fold): the sweep's flags, with this run's dataset, fold and
    directory, and the demo's or the paper's epochs and learning rate. Without `need_teacher` a missing
    distillation teacher is None instead of an error (for --dry_run)."""
    task, _ = resolve_dataset(dataset)
    _, _, multiplier, protocol, _ = fold_trainer.run_shape(argparse.Namespace(**{**vars(args), "dataset": dataset,
                                                                                   "fold": fold}))
    epochs, lr = args.epochs, args.lr
    if args.demo:  # the demo's epochs and lr, unless given
        setting = DEMO[task.family]
        epochs = epochs or setting["epochs"].get(fold, max(setting["epochs"].values()))
        if not lr and not (args.recipe == "distill" and fold > 1):
            lr = setting["lr"]
    savedir = run_dir(args.savedir, dataset, fold, multiplier, args.mode, args.recipe, fold_trainer.run_align(args, fold))
    teacher = args.teacher
    if protocol.distill:
        try:
            teacher = str(teacher_path(dataset, args))
        except ValueError:
            if need_teacher:
                raise
            teacher = None
    return argparse.Namespace(**{**vars(args), "dataset": dataset, "fold": fold, "savedir": str(savedir),
                                 "epochs": epochs or protocol.epochs, "lr": lr, "teacher": teacher})


def train_one(dataset, fold, args):
    """Train (or resume, or skip when finished) one (dataset, fold); returns its result row."""
    one = run_args(dataset, fold, args)
    finished, one.continue_from_file = distributed.on_main(resume_point, dataset, fold, Path(one.savedir), one)
    return finished or fold_trainer.main(one)


def sweep_units(datasets, folds, recipe="paper"):
    """The sweep as independent jobs, in training order: one per (dataset, fold), except that the folds of
    a task trained by distillation (CIFAR-10, or every task with --recipe distill) stay together, since its
    fold-1 model is their teacher."""
    units = []
    for dataset in datasets:
        task, _ = resolve_dataset(dataset)
        if (task.distill_folded or recipe == "distill") and 1 in folds:
            units.append((dataset, folds))
        else:
            units.extend((dataset, [fold]) for fold in folds)
    return units


def shard_spec(text):
    """--shard I/N: the I-th (1-based) of N slices."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N, for example 2/8") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be between 1 and N, for example 2/8")
    return index, count


def shard(units, index, count):
    """Shard `index` of `count` (1-based): every count-th unit, so the shards are disjoint and cover all units."""
    return units[index - 1::count]


def train_units(units, args):
    """Train every (dataset, folds) unit whose data is in place (generating stand-ins); returns the summary rows
    and the sets of datasets found ready and missing."""
    rows, ready, missing = [], set(), set()
    for dataset, unit_folds in units:
        if dataset in missing:
            continue
        if dataset not in ready:
            if dataset.startswith(SYNTHETIC):
                distributed.on_main(prepare_synthetic, dataset, args)
            problem = data_ready(dataset, args)
            if problem:
                distributed.print0(problem)
                missing.add(dataset)
                continue
            ready.add(dataset)
        for fold in unit_folds:
            result = train_one(dataset, fold, args)
            rows.append({c: result.get(c) for c in SUMMARY_COLUMNS})  # runs finished before a column existed
    return rows, ready, missing


def get_args_parser(add_help=True):
    """fold_trainer.py's training flags plus the sweep's own."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[fold_trainer.get_args_parser(add_help=False, one_run=False)],
                                     add_help=add_help)
    parser.add_argument("savedir", help="folder for every run's checkpoints, stats and summary.csv")
    parser.add_argument("--datasets", nargs="+", default=None, metavar="DATASET",
                        help=f"tasks to train (default: all): {', '.join(task_names())}; "
                             f"{SYNTHETIC}<task> for generated stand-in data (game and NoScope tasks)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 2, 3, 4], help="default: 1 2 3 4")
    parser.add_argument("--shard", type=shard_spec, default=None, metavar="I/N",
                        help="run only the I-th of N disjoint slices of the (dataset, fold) sweep (for N "
                             "independent jobs); writes summary_shardIofN.csv")
    parser.add_argument("--demo", action="store_true",
                        help="train generated game and NoScope stand-ins at f=1 and f=4 (f=4 with --recipe "
                             "distill unless --recipe is given; minutes on a CPU) and compare accuracy and throughput")
    parser.set_defaults(recipe=None)  # paper, or distill for the demo
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    args.recipe = args.recipe or (DEMO["recipe"] if args.demo else "paper")
    if args.demo:
        args.datasets = args.datasets or DEMO["datasets"]
        args.folds = DEMO["folds"] if args.folds == parser.get_default("folds") else args.folds
    baselines = [name for name in task_names("game") if get_task(name).compound_scaling_baseline]
    datasets = args.datasets or (baselines if args.mode == "efficientnet" else task_names())
    folds = sorted(set(args.folds))
    try:
        for dataset in datasets:  # the mode, task and multiplier fit together (errors before anything runs)
            fold_trainer.run_shape(argparse.Namespace(**{**vars(args), "dataset": dataset, "fold": 1}))
        units = sweep_units(datasets, folds, args.recipe)
        if args.shard:
            units = shard(units, *args.shard)
        if args.continue_from_file and (len(datasets) > 1 or len(folds) > 1):
            raise ValueError("--continue_from_file resumes one run: select one dataset and one fold")
        if args.dry_run:  # the protocol of every run, one JSON line each; nothing is read, written or trained
            plans = [fold_trainer.resolved_protocol(run_args(dataset, fold, args, need_teacher=False))
                     for dataset, unit_folds in units for fold in unit_folds]
        else:
            _, world, _ = distributed.setup(args.device)
            fold_trainer.per_rank_batch(args.batch_size, folds[-1], world)
            Path(args.savedir).mkdir(parents=True, exist_ok=True)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    except OSError as e:
        parser.exit(2, f"error: cannot write to {args.savedir}: {e.strerror}; choose a writable savedir\n")
    if args.dry_run:
        print("\n".join(json.dumps(plan) for plan in plans))
        return

    summary_file = Path(args.savedir) / "summary.csv"
    if args.shard:
        summary_file = summary_file.with_name(f"summary_shard{args.shard[0]}of{args.shard[1]}.csv")
        distributed.print0(f"shard {args.shard[0]}/{args.shard[1]}: " + (", ".join(
            f"{d} fold {'/'.join(map(str, f))}" for d, f in units) or "nothing to run (fewer runs than shards)"))
    try:
        rows, ready, missing = train_units(units, args)
    except (ValueError, DataMissing, FloatingPointError) as e:
        parser.exit(2, f"error: {fold_trainer.error_message(e)}\n")
    if missing and not ready:
        parser.exit(2, "error: no data for any selected task (see the lines above). Put the data where they say, "
                       "or try the stand-in demo: python3 train.py runs --demo\n")
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    distributed.on_main(write_text_atomic, summary_file, summary.to_csv(index=False, float_format="%.4f"))
    if rows:
        distributed.print0("\nSummary (test top-1 at the best validation epoch):")
        distributed.print0(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    distributed.print0(f"written to {summary_file}")
    if args.demo and rows and distributed.is_main():
        print(folding_gains(summary, args.device), flush=True)
    distributed.cleanup()


if __name__ == "__main__":
    main()
