"""The sweep of train.py as a library: the RunSpecs of every (dataset, fold) in training order (`plan`), trained
one after the other with finished runs skipped and unfinished ones resumed (`train_units`), and the summary.
util/accuracy_table.py and util/recipe_choices.py train through `sweep`."""
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from config.tasks import SPLITS, SYNTHETIC, USER, dataset_name, resolve_dataset
from datasets import data_location
from datasets.loaders import how_to_get
from datasets.noscope import split_from_video
from datasets.synthetic import make_game_dataset, make_noscope_video
from util.core.device import REPO, pick_device
from util.core.files import write_text_atomic, writing
from util.measure.benchmark import compare_with_plain_eager
from util.measure.compare import comparison
from util.train import distributed
from util.train.ownership import HEARTBEAT_SECONDS, LEASE_SECONDS, RunHeld, holding, run_lock
from util.train.protocol import DISTILL, paper_protocol, student_epochs
from util.train.spec import build_spec, check_precision_matches, check_same_model, run_dir
from util.train.trainer import Options, behind_note, train

MODEL_FILES = REPO / "model_files"
# test_top1 is at this project's best epoch (the most curriculum classes so far); the authors' pick (the highest
# validation top-1 of any epoch) is in each run's result.json: docs/protocol.md, section 7.
SUMMARY_COLUMNS = ["dataset", "fold", "mode", "recipe", "epochs", "best_val_top1", "test_top1", "worst_slot_test_top1",
                   "train_images_per_sec", "note"]  # note: a folded run that fell far behind (trainer.behind_note)
POLL_SECONDS = min(HEARTBEAT_SECONDS, 10)  # how often a run waiting for its teacher looks again
SYNTHETIC_GAME_IMAGES = (150, 30, 30)  # per class, for train, val and test
SYNTHETIC_VIDEO_FRAMES = 8000  # noscope-coral's splits then hold 1000 frames each
SYNTHETIC_DATA_SEED = 0  # the stand-in data does not change with --seed, which seeds training
# The demo: a game task and a NoScope task (through the video pipeline) sized for a 2-core CPU, the folded
# models trained with --recipe distill. The paper trains for 1500 (game) and 50 (NoScope) epochs; the demo's
# originals 40 and 10, its students the recipe's budget of those (120 and 12: 60 left the game student 4.9 points
# behind, results/README.md). The lr is that of f=1 (and of --recipe paper); distilled runs keep the recipe's.
DEMO = {"datasets": [SYNTHETIC + "sot/coin_count-digits_3_4-v2", SYNTHETIC + "noscope-coral"], "folds": [1, 4],
        "recipe": "distill",
        "game": {"epochs": 40, "lr": 3e-4},
        "noscope": {"epochs": 10, "lr": None}}


def demo_settings(settings, dataset, fold):
    """`settings` with the demo's epochs of the original (its students get the recipe's budget: run_settings) and lr,
    where the user gave none."""
    task, _ = resolve_dataset(dataset)
    demo, overrides = DEMO[task.family], dict(settings["overrides"])
    if not overrides.get("lr") and not (settings["recipe"] == "distill" and fold > 1):
        overrides["lr"] = demo["lr"]
    if settings["epochs"]:
        return {**settings, "overrides": overrides}
    return {**settings, "epochs": demo["epochs"], "epochs_choice": "the demo's", "overrides": overrides}


RECIPE_BUDGET = "the distill recipe's student budget"  # how run_settings says a student's epochs were chosen


def run_settings(settings, task, fold):
    """build_spec's keyword arguments for one run of a sweep: --epochs are the original's, and a folded student of
    --recipe distill trains the recipe's budget (util.train.protocol.student_epochs: a multiple of them, and at most
    what fits in the recipe's multiple of the original's training seconds: util.train.budget) unless
    --student_epochs ("student_epochs" in `settings`) gives its epochs."""
    settings = dict(settings)
    given = settings.pop("student_epochs", None)
    if settings["recipe"] != "distill" or fold == 1 or settings.get("mode", "folded") != "folded":
        return settings
    if given:
        return {**settings, "epochs": given, "epochs_choice": "given (--student_epochs)"}
    original = settings["epochs"] or paper_protocol(task, 1).epochs
    budget, recipe = student_epochs(task, original), DISTILL[task.family]
    return {**settings, "epochs": budget, "seconds_bound": recipe["student_seconds"],
            "epochs_choice": f"{RECIPE_BUDGET}: {budget} = {recipe['student_epochs']:g}x the original's {original} "
                             f"epochs, at most those that fit in {recipe['student_seconds']:g}x its training seconds "
                             "(timed when the student starts)"}


def teacher_path(dataset, root, teacher=None, trains_original=False):
    """The distillation teacher of `dataset`'s folded runs: `teacher` if given, else model_files/<dataset>/original/model.pth,
    else the authors' model_files/<dataset>/resnet18/model.t7, else the sweep's own f=1 best.pth where it exists or
    the sweep trains it first (`trains_original`); None when there is none."""
    if teacher:
        return Path(teacher)  # a missing file is the trainer's one-line error
    candidates = teacher_candidates(dataset, root)
    found = [path for path in candidates if path.exists()]
    if found:
        return found[0]
    return candidates[-1] if trains_original else None


def teacher_candidates(dataset, root):
    """Where a sweep in `root` looks for `dataset`'s teacher, in order; the last is the sweep's own f=1 (the only
    one of a user's task)."""
    own = run_dir(root, build_spec(dataset, 1)) / "best.pth"
    if resolve_dataset(dataset)[0].family == USER:
        return [own]
    return [MODEL_FILES / dataset / "original" / "model.pth", MODEL_FILES / dataset / "resnet18" / "model.t7", own]


def missing_teacher(dataset, root):
    """The error of a distilled run without a teacher."""
    return (f"{dataset_name(dataset)}: folded training distils the original model, but no teacher was found at "
            f"{' or '.join(map(str, teacher_candidates(dataset, root)))}; train fold 1 first (--folds 1 ...) or "
            f"pass --teacher")


def plan(root, datasets, folds, settings, demo=False, need_teacher=True):
    """The sweep as [(dataset, [RunSpec, ...])] units in training order (see sweep_units), each spec in its run
    directory under `root`. `settings`: util.train.spec.build_spec's keyword arguments for every run; `demo`: the
    demo's epochs and lr where not given. A ValueError names a setting that does not fit a dataset, or a distilled
    run without a teacher (unless not `need_teacher`: --dry_run shows the teacher as None)."""
    units = []
    for dataset, unit_folds in sweep_units(datasets, sorted(set(folds)), settings["recipe"]):
        task, specs = resolve_dataset(dataset)[0], []
        for fold in unit_folds:
            one = run_settings(demo_settings(settings, dataset, fold) if demo else settings, task, fold)
            spec = build_spec(dataset, fold, root, **{**one, "teacher": None})
            teacher = None
            if spec.protocol.distill:
                teacher = teacher_path(dataset, root, settings.get("teacher"), trains_original=1 in unit_folds)
                if teacher is None and need_teacher:
                    raise ValueError(missing_teacher(dataset, root))
            specs.append(dataclasses.replace(spec, savedir=str(run_dir(root, spec)),
                                             teacher=None if teacher is None else str(teacher)))
        units.append((dataset_name(dataset), specs))
    return units


def run_result(root, dataset, fold, recipe="paper"):
    """The result.json of a finished (dataset, fold) run of a sweep in `root` (default multiplier sqrt(f))."""
    path = run_dir(root, build_spec(dataset, fold, recipe=recipe)) / "result.json"
    return json.loads(path.read_text())


def folding_gains(summary, device, batch_size=1024):
    """Lines comparing each folded run of `summary` with its f=1 run: test top-1, the gap, and the images/sec of
    the folded CNN against the original's on this machine (the default inference path, 3 interleaved trials, with
    their range: two that tie within it are said to tie)."""
    device = pick_device(device)
    lines = [f"\nWhat folding buys here (test top-1; inference images/sec at batch {batch_size} on {device}, "
             f"3 interleaved trials):"]
    for dataset, runs in summary.groupby("dataset", sort=False):
        top1 = dict(zip(runs.fold, runs.test_top1))
        folds = [f for f in top1 if f > 1]
        if 1 not in top1 or not folds:
            continue
        task, _ = resolve_dataset(dataset)
        trials, backend = compare_with_plain_eager(task.name, folds, batch_size, device, trials=3, min_time=0.3)
        for f in folds:
            gap = round(100 * (top1[f] - top1[1]), 1) + 0.0
            speed = comparison(trials, f"default f={f}", "default f=1", f"f={f}", "f=1")
            lines.append(f"  {dataset}: f={f} top-1 {top1[f]:.3f}, f=1 {top1[1]:.3f} ({gap:+.1f} points); "
                         f"images/sec: {speed} ({backend})")
    if device.type == "cpu":
        lines.append("  (on a CPU in fp32 folding often gains little: the paper's gains are on GPUs, where a small "
                     "CNN leaves the chip idle; see README, 'Where folding pays')")
    return "\n".join(lines)


def prepare_synthetic(dataset, options):
    """Generate a synthetic-<task> dataset where it is missing (always the same data: SYNTHETIC_DATA_SEED)."""
    task, _ = resolve_dataset(dataset)
    location = data_location(dataset, options.data_dir, options.data_root)
    if location.is_dir():
        return
    print(f"{dataset}: generating stand-in data in {location}", flush=True)
    if task.family == "game":
        make_game_dataset(task.name, location, per_class=SYNTHETIC_GAME_IMAGES, seed=SYNTHETIC_DATA_SEED)
    elif task.family == "noscope":
        source = Path(options.data_dir) / f"{dataset}-video"
        with writing(source):
            source.mkdir(parents=True, exist_ok=True)
        video, labels = make_noscope_video(task.name, source / "video.mp4", source / "labels.csv",
                                           n_frames=SYNTHETIC_VIDEO_FRAMES, seed=SYNTHETIC_DATA_SEED)
        split_from_video(dataset, location, labels, video)
    else:
        raise ValueError(f"{dataset}: there is no synthetic stand-in for {task.family} tasks; use {task.name}")


def data_ready(dataset, options):
    """None if `dataset`'s data is in place, else the one line saying where it must be and how to get it."""
    task, _ = resolve_dataset(dataset)
    name = dataset_name(dataset)
    location = data_location(dataset, options.data_dir, options.data_root)
    how = how_to_get(dataset, location)
    if task.family == "cifar":
        present = options.download or (location.is_dir() and any(location.iterdir()))
        return None if present else f"skipping {name}: no data at {location}; {how}"
    if not location.is_dir():
        return f"skipping {name}: no data at {location}; {how}"
    for split in SPLITS:
        folder = location / split
        if not folder.is_dir() or not any(folder.iterdir()):
            return f"skipping {name}: missing or empty split directory {folder}; {how}"
    return None


def finished_within_bound(spec, finished):
    """Whether a finished run trained the budget `spec` asks for, its epochs cut to the same seconds' bound
    (util.train.budget: they were timed when it started, and are not timed again)."""
    recorded = Path(spec.savedir) / "run.json"
    if not spec.seconds_bound or finished["epochs"] > spec.epochs or not recorded.exists():
        return False
    recorded = json.loads(recorded.read_text())
    return recorded.get("seconds_bound") == spec.seconds_bound and \
        recorded.get("epochs_choice", "").startswith(spec.epochs_choice)  # the same budget, then cut


def resume_point(spec, options):
    """(result, None) for a finished run; else (None, the checkpoint to resume from, or None to start)."""
    savedir = Path(spec.savedir)
    result_file, current = savedir / "result.json", savedir / "current.pth"
    name = spec.name
    if options.continue_from_file:
        resume = options.continue_from_file
    else:
        if result_file.exists():
            finished = json.loads(result_file.read_text())
            check_same_model(spec, finished, result_file)  # never another model's result under this name
            check_precision_matches(spec, finished, result_file)
            if finished["epochs"] == spec.epochs or finished_within_bound(spec, finished):
                print(f"{name}: finished earlier, skipping ({savedir})", flush=True)
                return finished, None
            if spec.epochs_choice.startswith(RECIPE_BUDGET):  # not stretched onto another schedule
                print(f"{name}: finished earlier with {finished['epochs']} epochs, and {spec.epochs_choice}; kept as it "
                      f"is ({savedir}): pass --student_epochs {spec.epochs} to train it on, or train into another "
                      "savedir", flush=True)
                return finished, None
        resume = str(current) if current.exists() else None
    if resume:
        print(f"{name}: resuming from {resume}", flush=True)
    else:
        bound = f" at most (those that fit in {spec.seconds_bound:g}x its original's seconds: timed first)" \
            if spec.seconds_bound else ""
        print(f"{name}: training {spec.epochs} epochs{bound} into {savedir}", flush=True)
    return None, resume


def train_one(spec, options, watch=True):
    """Train (or resume, or skip when finished) one run, holding its directory; returns its result row. RunHeld if
    another job holds it (`watch`: see util.train.ownership.acquire)."""
    with holding(run_lock(spec.savedir), spec.name, watch=watch):
        finished, resume = distributed.on_main(resume_point, spec, options)
        return finished or train(spec, dataclasses.replace(options, continue_from_file=resume))


def take_run(spec, options, rows, held, watch=True):
    """Train one run (train_one) and add its summary row to `rows`; True if done. A run another job holds goes into
    `held` ({savedir: (spec, its holder)}) instead."""
    try:
        result = train_one(spec, options, watch)
    except RunHeld as e:
        held[spec.savedir] = (spec, e.holder)
        return False
    held.pop(spec.savedir, None)
    row = {c: result.get(c) for c in SUMMARY_COLUMNS}  # runs finished before a column existed: None
    note = behind_note({**result, "savedir": spec.savedir}, *reference_top1(result, rows))
    # "original" at f=1 (results before 2026-12-05 say "folded")
    rows.append({**row, "mode": spec.mode, "note": note and note.removeprefix("warning: ")})
    return True


def own_teacher(spec, specs):
    """The run of `specs` (the sweep's own f=1) whose best.pth teaches `spec`, or None."""
    return next((s for s in specs if spec.teacher and spec.teacher == str(Path(s.savedir) / "best.pth")), None)


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


def shard(units, index, count):
    """Shard `index` of `count` (1-based): every count-th unit, so the shards are disjoint and cover all units."""
    return units[index - 1::count]


def train_units(units, options=Options()):
    """Train every unit of `plan` whose data is in place (generating stand-ins); returns the summary rows and the
    sets of datasets found ready and missing.

    Runs that other jobs hold (util.train.ownership) are left to them, and said in one line at the end, after the
    free runs; a distilled run whose teacher (the sweep's own f=1 run) another job is training waits, once nothing
    else is free, until the teacher's result.json says it finished (or its holder is gone: the teacher is then
    trained here)."""
    rows, ready, missing, held, waiting = [], set(), set(), {}, []
    for dataset, specs in units:
        if dataset in missing:
            continue
        if dataset not in ready:
            if dataset.startswith(SYNTHETIC):
                distributed.on_main(prepare_synthetic, dataset, options)
            problem = data_ready(specs[0].data_source, options)
            if problem:
                distributed.print0(problem)
                missing.add(dataset)
                continue
            ready.add(dataset)
        for spec in specs:
            teacher = own_teacher(spec, specs)
            if teacher is not None and teacher.savedir in held:
                waiting.append((spec, teacher))
            else:
                take_run(spec, options, rows, held, watch=False)
    for spec, _ in list(held.values()):  # done meanwhile, or held by a job that stopped renewing its lock
        take_run(spec, options, rows, held)
    wait_for_teachers(waiting, options, rows, held)
    if held:
        distributed.print0("left to other jobs: " + ", ".join(f"{spec.name} ({holder})"
                                                            for spec, holder in held.values()))
    return rows, ready, missing


def wait_for_teachers(waiting, options, rows, held):
    """Train the distilled runs of `waiting` [(spec, teacher spec)] once their teacher is done (take_run: finished
    by the job that held it, or trained here where that job is gone), looking again every POLL_SECONDS."""
    said = False
    while waiting:
        for teacher in {t.savedir: t for _, t in waiting}.values():
            if teacher.savedir not in held or take_run(teacher, options, rows, held):
                for spec in [s for s, t in waiting if t is teacher]:
                    take_run(spec, options, rows, held, watch=False)
                waiting = [(s, t) for s, t in waiting if t is not teacher]
        if waiting and not said:
            teachers = {t.savedir: t for _, t in waiting}.values()
            distributed.print0("waiting for teachers that other jobs are training: " + "; ".join(
                f"{t.name} ({held[t.savedir][1]}) for " + ", ".join(s.name for s, u in waiting if u is t)
                for t in teachers))
            said = True
        if waiting:
            time.sleep(POLL_SECONDS)


def reference_top1(result, rows):
    """(validation top-1, what it is) a folded run is held against: its teacher's, else its dataset's f=1 run's in
    `rows` (summary rows so far), else (None, "")."""
    if result.get("teacher_val_top1") is not None:
        return result["teacher_val_top1"], "its teacher"
    original = [r for r in rows if r["dataset"] == result["dataset"] and r["fold"] == 1 and r["mode"] == "original"]
    return (original[-1]["best_val_top1"], "the original (f=1)") if original else (None, "")


def sweep(root, datasets, folds, settings, options=Options()):
    """Plan and train a sweep in `root` (see plan and train_units); returns the summary rows."""
    rows, _, _ = train_units(plan(root, datasets, folds, settings), options)
    return rows


SUMMARY_KEY = ["dataset", "fold", "mode", "recipe"]  # one row per run of a savedir


def write_summary(rows, path):
    """summary.csv (written by rank 0): this command's rows, after the rows other commands into the same savedir
    wrote for other runs (a run trained again replaces its row); returns this command's rows as a DataFrame. The
    read, merge and write hold summary.csv.lock, so that jobs sharing the savedir leave every run listed once."""
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    path = Path(path)
    with holding(path.with_name(f"{path.name}.lock"), path, wait=2 * LEASE_SECONDS):
        distributed.on_main(write_merged, summary, path)
    return summary


def write_merged(summary, path):
    write_text_atomic(path, merged(summary, path).to_csv(index=False, float_format="%.4f"))


def merged(summary, path):
    """`summary` after the rows of the summary.csv at `path` (if any) that are not of the same runs."""
    if not Path(path).is_file():
        return summary
    earlier = pd.read_csv(path).reindex(columns=SUMMARY_COLUMNS)
    earlier.loc[(earlier["fold"] == 1) & (earlier["mode"] == "folded"), "mode"] = "original"  # older summaries
    keys = set(summary[SUMMARY_KEY].astype(str).itertuples(index=False, name=None))
    others = earlier[[k not in keys for k in earlier[SUMMARY_KEY].astype(str).itertuples(index=False, name=None)]]
    return pd.concat([others, summary], ignore_index=True) if len(others) else summary
