"""Train one run (a RunSpec) with its protocol (docs/protocol.md, section 3) or as a student of the trained original
(--recipe distill, section 8): `train(spec, options, hooks)`. `Hooks` are what a variant of training may change (the
model, its start, the distillation targets, the loss, the augmentation): a variant passes its own functions.

Every epoch trains, then validates and tests. It writes, in the run directory: `run.json` (the spec) when it
starts (a resumed run: with its first checkpoint), one stats file per split and metric (`stats/<split>_<metric>.txt`, one line appended per epoch),
`current.pth` every `checkpoint_cycle` epochs, `best.pth` on a better validation top-1, and `result.json` when the
run is finished. A run continues from a checkpoint with `continue_from_file`.

Under `torchrun` it trains with DistributedDataParallel: each rank trains on its own 1/N of every epoch's images,
in batches of batch_size / N (a multiple of f); training metrics are summed over the ranks; rank 0 alone
validates, tests and writes files.
"""
import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from config.tasks import SPLITS, USER
from datasets import DATA_DIR, CurriculumDataset, DistillationDataset, curriculum_schedule, load_splits
from datasets.loaders import collate, split_targets
from models import build_classifier, narrow_classifier
from models.fold import fold_input, whole_groups
from models.batchnorm import add_batchnorm, calibrate_batchnorm, plain_state, without_batchnorm
from models.init import centre_on_data
from models.user import load_weights
from models.warm_start import start_from_teacher, start_slots_apart
from util.core.device import cpu_bf16_problem, seed_everything
from util.core.files import append_line, complete_lines, keep_lines, save_atomic, write_json_atomic
from util.train import distributed
from util.train.checkpoint import (checkpoint_path, load_classifier, model_args, read_training_state, rng_state,
                                   save_checkpoint, set_rng_state)
from util.train.budget import bounded_spec, resumed_spec
from util.train.ownership import check_held, holding, run_lock
from util.train.loop import AMP_DTYPES, WeightAverage, averages, evaluate, slot_top1, train_one_epoch
from util.train.protocol import group_transform, lr_factor, make_optimizer, set_learning_rate, training_loss
from util.train.spec import check_resume


@dataclasses.dataclass(frozen=True)
class Options:
    """How a run is carried out on this machine, beside what it is (the RunSpec): none of it changes the result."""

    device: str | None = None  # cpu, cuda or cuda:N; None: CUDA when available
    data_dir: str = str(DATA_DIR)  # CIFAR and NoScope data
    data_root: str | None = None  # game data ($DATA_ROOT, then data_root/)
    download: bool = False  # CIFAR through torchvision when missing
    stream_images: bool = False  # read game/NoScope images from disk every epoch instead of holding them in memory
    workers: int | None = None  # data-loader workers (None: 0 for images in memory, else cores - 1, at most 4)
    checkpoint_cycle: int = 1  # save current.pth every N epochs
    # model and batches in channels-last memory format (the same math); None: on a CPU, where its convolutions are
    # faster, not on CUDA, where these small CNNs step no faster in it (results/h200/README.md)
    channels_last: bool | None = None
    continue_from_file: str | None = None  # the checkpoint to resume from


@dataclasses.dataclass
class Progress:
    """What a run has done so far: saved in every checkpoint, restored on resume."""

    epoch: int = 0
    best: dict = dataclasses.field(
        default_factory=lambda: {"val_top1": -1.0, "epoch": None, "test_top1": None, "classes": 0})
    # The authors' selection: the strictly highest validation top-1 of any epoch, whatever its classes.
    authors_best: dict = dataclasses.field(default_factory=lambda: {"val_top1": -1.0, "epoch": None, "test_top1": None})
    train_images: int = 0
    train_seconds: float = 0.0


@dataclasses.dataclass
class Run:
    """A run's live objects: its spec and options, and the model, optimizer and data built for them."""

    spec: object  # RunSpec
    options: Options
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    splits: dict
    average: WeightAverage | None = None  # the weights' moving average (protocol.ema), else None
    spec_written: bool = False  # run.json holds this spec
    hooks: object = None  # the run's Hooks
    teacher: torch.nn.Module | None = None  # the live teacher of a consistent distilled run (protocol.consistent)

    @property
    def evaluated(self):
        """The model that validation and test evaluate and best.pth keeps: the average where there is one."""
        return self.average.model if self.average else self.model

    @property
    def images_per_input(self):
        return self.spec.images_per_input

    @property
    def protocol(self):
        return self.spec.protocol

    @property
    def num_classes(self):
        return self.spec.task.num_classes


_teachers = {}  # (path, size, mtime, task, device) -> the teacher model: loaded once per file version in a process


def load_teacher(path, task, device):
    """The original (f=1) model of `task` from `path` (a checkpoint of this repository, or a plain state dict), in eval
    mode; loaded once per version of the file, task and device in a process (a run's check, its targets, its start
    and its consistent targets share it; they only read it)."""
    file = checkpoint_path(path)
    if not file.is_file():
        return read_teacher(path, task, device)  # its one-line error
    key = (str(file.resolve()), file.stat().st_size, file.stat().st_mtime_ns, task.name, str(device))
    if key not in _teachers:
        for old in [k for k in _teachers if k[:4] != key[:4]]:  # a sweep's next dataset has another teacher
            del _teachers[old]
        _teachers[key] = read_teacher(path, task, device)
    return _teachers[key]


def read_teacher(path, task, device):
    """load_teacher's model, read from the file."""
    fix = ("pass your f=1 run's best.pth, or your trained model's state dict (torch.save(model.state_dict(), path))"
           if task.family == USER else "pass the trained original's best.pth (or model.pth) with --teacher")
    teacher, state = load_classifier(path, device, task=task, what="teacher", fix=fix)
    args = state.get("model_args", {"task": task.name, "fold": 1})
    if args["fold"] != 1:
        raise ValueError(f"teacher {path} is a fold-{args['fold']} model; the teacher must be the original (fold 1)")
    if args["task"] != task.name:
        raise ValueError(f"teacher {path} is a model of {args['task']}, not {task.name}; {fix}")
    return teacher


def weights_digest(model):
    """A fingerprint of `model`'s weights (sha256 of its state dict): which teacher cached logits came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def teacher_logits(teacher, data, device, cache):
    """The teacher's logits for every sample of `data` (un-augmented), in its order: computed once into `cache`
    and read from there while the cache holds as many samples with the same labels in the same order, from the
    same teacher (its weights' digest: a teacher trained further, or another one, computes them again)."""
    labels, identity = torch.tensor(split_targets(data)), weights_digest(teacher)
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        if isinstance(saved, dict) and saved.get("teacher") == identity and torch.equal(saved["targets"], labels):
            return saved["logits"]
    loader = DataLoader(data, batch_size=256, shuffle=False, collate_fn=collate)
    logits = torch.cat([teacher(images.to(device)).float().cpu() for images, _ in loader])
    save_atomic({"logits": logits, "targets": labels, "teacher": identity}, cache)
    return logits


def distillation_targets(spec, options, device, teacher_targets=teacher_logits):
    """The teacher's targets for each split (`teacher_targets`, its logits by default, cached in the run directory):
    the regression targets of distillation.

    Prints the teacher's top-1 on each split's labels (from the targets' first K columns, the logits), so that a wrong
    teacher shows at once."""
    teacher = load_teacher(spec.teacher, spec.task, device)
    plain = load_splits(spec.data_source, spec.images_per_input, options.data_dir, options.data_root, spec.seed,
                        augment=False, val_size=spec.val_size)
    savedir = Path(spec.savedir)
    targets = {s: teacher_targets(teacher, plain[s], device, savedir / f"teacher_logits_{s}.pt") for s in SPLITS}
    accuracy = {s: targets_top1(targets[s], split_targets(plain[s]), spec.task.num_classes) for s in SPLITS}
    print(f"teacher {spec.teacher}: top-1 " + ", ".join(f"{s} {accuracy[s]:.4f}" for s in SPLITS), flush=True)
    return targets


def targets_top1(targets, labels, num_classes):
    """The teacher's top-1 on `labels`, from its distillation `targets` (its logits are their first K columns)."""
    return (targets[:, :num_classes].argmax(1) == torch.tensor(labels)).float().mean().item()


def check_teacher(spec, device):
    """A ValueError, before anything is written, unless a distilled run has a teacher that loads."""
    if not spec.teacher:
        where = ("your f=1 run's best.pth, or --weights ORIGINAL.pth" if spec.user_task else
                 f"the trained original's best.pth or model_files/{spec.task.name}/original/model.pth")
        raise ValueError(f"{spec.dataset} at fold {spec.images_per_input} is trained by distillation: pass "
                         f"--teacher ({where})")
    load_teacher(spec.teacher, spec.task, device)  # a ValueError if it does not load or is not the original


def start_student(model, spec):
    """--init teacher: the folded `model` starts with every slot reading a copy of its teacher (models.warm_start);
    a ValueError naming the way out where the two do not line up."""
    teacher = load_teacher(spec.teacher, spec.task, "cpu")  # where the new model is
    try:
        copies = start_from_teacher(model.net, teacher.net, spec.fold, spec.task.input_shape)
    except ValueError as e:
        raise ValueError(f"--init teacher: {e}; train from fresh weights (--init fresh)") from None
    if distributed.is_main():
        print(f"{spec.dataset} fold {spec.fold}: the student starts from its teacher, {copies} "
              f"cop{'y' if copies == 1 else 'ies'} of it read by its {spec.fold} slots", flush=True)


def start_apart(model, spec):
    """--init separate: the folded `model` starts with every slot in its own block of channels, a fresh narrow copy
    of the original (models.warm_start.start_slots_apart); where one copy a slot does not fit (a layer too narrow to
    split f ways, layers that do not line up), it keeps its fresh start and says so."""
    try:
        narrow = narrow_classifier(spec.task, spec.multiplier / spec.fold)
        start_slots_apart(model.net, narrow.net, spec.fold, spec.task.input_shape)
        line = (f"the student's {spec.fold} slots start apart, each a fresh copy of the original at 1/{spec.fold} of "
                "its folded width")
    except ValueError as e:
        line = f"--init separate does not fit this model ({e}): the student starts fresh"
    if distributed.is_main():
        print(f"{spec.dataset} fold {spec.fold}: {line}", flush=True)


DATA_INIT_IMAGES = 256


def first_inputs(train, spec):
    """The folded inputs of the first images of the training split (at most DATA_INIT_IMAGES), the same on every rank
    (the split's order depends on the seed alone): what the data-dependent starts look at."""
    count = whole_groups(min(DATA_INIT_IMAGES, len(train)), spec.images_per_input)
    return fold_input(torch.stack([train[i][0] for i in range(count)]), spec.images_per_input)


def start_from_data(model, train, spec):
    """--init data: the folded `model` starts centred on the first images of its training split (models.init.
    centre_on_data)."""
    inputs = first_inputs(train, spec)
    layers = centre_on_data(model.net, inputs)
    if distributed.is_main():
        print(f"{spec.dataset} fold {spec.fold}: the student's {layers} hidden layers start centred on "
              f"{inputs.shape[0] * spec.images_per_input} training images (--init data)", flush=True)


def trains_with_batchnorm(spec):
    """Whether the run's model trains with models.batchnorm's BatchNorm (a folded student with --batchnorm on)."""
    return spec.images_per_input > 1 and spec.protocol.batchnorm


def build_run_model(spec):
    """The run's model as its spec describes it (models.build_classifier), with its training BatchNorm if any."""
    model = build_classifier(spec.task, spec.fold, spec.multiplier, spec.mode, spec.align)
    if trains_with_batchnorm(spec):
        add_batchnorm(model.net)
    return model


def start_model(model, spec, splits):
    """The start of a new run's model that its protocol asks for (--init): a folded model from its teacher or centred
    on its training images; otherwise (and for f = 1) the fresh initialisation stays. A training BatchNorm then starts
    as an identity on the first training images (models.batchnorm.calibrate_batchnorm)."""
    with without_batchnorm(model.net):
        if spec.images_per_input > 1 and spec.protocol.init == "teacher":
            start_student(model, spec)
        if spec.images_per_input > 1 and spec.protocol.init == "data":
            start_from_data(model, splits["train"], spec)
        if spec.images_per_input > 1 and spec.protocol.init == "separate":
            start_apart(model, spec)
    if trains_with_batchnorm(spec):
        calibrate_batchnorm(model.net, first_inputs(splits["train"], spec))


@dataclasses.dataclass(frozen=True)
class Hooks:
    """What a variant of training may change, handed to `train()` as a value: pass your own functions
    (`Hooks(loss=my_loss)`; the defaults are the recipes' own, as the RunSpec's protocol sets them) instead of
    reassigning names inside util/train. docs/examples/feature_distill.py uses every one but `transform`.

    build(spec) -> model: the model the run trains, a FoldedClassifier (submodules added to it train with it)
    start(model, spec, splits): its starting weights, for a new run only (a resumed run loads its checkpoint)
    targets(teacher, data, device, cache) -> tensor: per-sample targets of distillation in the data's order, the
        teacher's K logits first (cache: a file it may keep them in)
    loss(logits, labels, targets, protocol, images_per_input) -> scalar: the training loss, also validation's and
        test's (images_per_input: f, the images of one folded input)
    transform(protocol, images_per_input, progress) -> batch function or None: the augmentation at `progress` (0..1)
        of training
    """

    build: Callable = build_run_model
    start: Callable = start_model
    targets: Callable = teacher_logits
    loss: Callable = training_loss
    transform: Callable = group_transform


def per_rank_batch(batch_size, fold, world):
    """Each of `world` processes' share of --batch_size, rounded down to a multiple of f; a ValueError if none."""
    share = whole_groups(batch_size // world, fold)
    if share < fold:
        processes = f" x {world} processes" if world > 1 else ""
        raise ValueError(f"--batch_size {batch_size} is smaller than the fold {fold}{processes}: "
                         f"use at least {fold * world}")
    return share


def prepare_savedir(savedir, epochs_done):
    """Create savedir/stats, remove a killed run's unfinished writes, and keep `epochs_done` lines of each
    stats file (a line past the checkpoint, or one torn by a crash, is dropped)."""
    savedir = Path(savedir)
    stats_dir = savedir / "stats"
    try:
        stats_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write to {savedir}: {e.strerror}; choose a writable savedir") from None
    for stale in [*savedir.glob(".*.tmp"), *stats_dir.glob(".*.tmp")]:
        stale.unlink()
    for path in stats_dir.glob("*.txt"):
        keep_lines(path, epochs_done)


def append_stats(stats_dir, metrics):
    """Append this epoch's line to each stats file (`<split>_<metric>.txt`; `train_seconds.txt`: the training
    seconds so far, without evaluation)."""
    for split, values in metrics.items():
        for name, value in values.items():
            if name != "images" and not name.startswith("slot"):
                append_line(stats_dir / f"{split}_{name}.txt", f"{value:.6f}")


def build_splits(spec, options, device, teacher_targets=teacher_logits):
    """The train/val/test datasets of the run: with the teacher's targets when distilling, a curriculum when
    scheduled."""
    task, images_per_input, protocol = spec.task, spec.images_per_input, spec.protocol
    splits = load_splits(spec.data_source, images_per_input, options.data_dir, options.data_root, spec.seed,
                         options.download, val_size=spec.val_size, cache=not options.stream_images)
    if protocol.distill:
        targets = distributed.on_main(distillation_targets, spec, options, device, teacher_targets)
        splits = {s: DistillationDataset(splits[s], targets[s]) for s in SPLITS}
    if protocol.curriculum:
        start, step, gap = curriculum_schedule(task.num_classes, images_per_input, spec.epochs, protocol.epochs,
                                               protocol.slow_curriculum)
        splits = {s: CurriculumDataset(d, task.num_classes, start, step, gap) for s, d in splits.items()}
    return splits


def fast_amp(device):
    """(autocast dtype name or None, why) of the fast training step on `device`: bf16 autocast on a CPU with bf16
    instructions, else None (fp32). On CUDA fp32: at the recipes' batches these CNNs' steps are launch-bound, and
    autocast's casts made them 0.73-0.83x as fast on an H200 (results/h200/README.md). --recipe distill's students
    train in it unless --amp says otherwise (util.train.spec.build_spec)."""
    if device.type == "cuda":
        return None, "auto: a distilled student on CUDA, where autocast measured slower at these batches"
    if device.type == "cpu" and cpu_bf16_problem() is None:
        return "bf16", "auto: a distilled student on a CPU with bf16 instructions"
    return None, f"auto: a distilled student, and {device} has no bf16 instructions"


def check_precision(amp, device):
    """A ValueError if autocast `amp` cannot run on `device`."""
    no_bf16 = cpu_bf16_problem(fix="drop --amp")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--amp (fp16 mixed precision) needs CUDA, and this run is on {device}: drop --amp"
                         + ("" if no_bf16 else ", or use --amp bf16"))
    if amp == "bf16" and device.type == "cpu" and no_bf16:
        raise ValueError(f"--amp bf16: {no_bf16}")


def check_run(spec, options, device, world):
    """The run's checks before anything is written or loaded; returns the checkpoint to resume from, or None."""
    check_precision(spec.amp, device)
    per_rank_batch(spec.batch_size, spec.images_per_input, world)
    state = None
    if options.continue_from_file:
        state = read_training_state(options.continue_from_file, device)
        check_resume(spec, state, options.continue_from_file)
    if spec.protocol.distill:
        distributed.on_main(check_teacher, spec, device)
    return state


def setup_run(spec, options, device, world, hooks=Hooks(), state=None):
    """Ready the held run directory, load the data and build the model and optimizer (resuming from the checkpoint
    `state`, see check_run); returns (Run, state)."""
    if options.channels_last is None:
        options = dataclasses.replace(options, channels_last=device.type == "cpu")
    savedir = Path(spec.savedir)
    if not state and (savedir / "current.pth").exists():
        raise ValueError(f"{savedir} already holds a run: resume it with --continue_from_file "
                         f"{savedir / 'current.pth'}, or choose another --savedir")
    distributed.on_main(prepare_savedir, savedir, state["epoch"] if state else 0)
    seed_everything(spec.seed)
    splits = build_splits(spec, options, device, hooks.targets)
    model = hooks.build(spec)
    if spec.weights:  # a user's trained original: evaluated, not trained
        load_weights(model.net, spec.weights, spec.task.model_file)
    if not state:
        hooks.start(model, spec, splits)
    memory_format = torch.channels_last if options.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    if not state:  # a resumed run writes its spec with its first checkpoint, so a failed resume changes nothing
        distributed.on_main(write_spec, spec)
    protocol = spec.protocol
    optimizer = make_optimizer(model, protocol)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, protocol.lr_step, 0.5) if protocol.schedule == "step" else None
    scaler = torch.amp.GradScaler(device.type, enabled=spec.amp == "fp16")  # bf16 needs no loss scaling
    average = WeightAverage(model, protocol.ema) if protocol.ema else None
    if average:
        optimizer.register_step_post_hook(average.update)
    teacher = None
    if protocol.consistent and protocol.distill:  # after everything above: the same draws as without it
        teacher = load_teacher(spec.teacher, spec.task, device).to(memory_format=memory_format)
    return Run(spec, options, device, model, optimizer, scheduler, scaler, splits, average,
               spec_written=not state, hooks=hooks, teacher=teacher), state


def write_spec(spec):
    """run.json: the run's spec (RunSpec.describe()), what --dry_run prints."""
    write_json_atomic(Path(spec.savedir) / "run.json", spec.describe())


def restore(run, state):
    """Continue from a training checkpoint: weights, optimizer, schedules and random generators; returns Progress."""
    run.model.load_state_dict(state.get("training_model") or state["model"])
    if run.average:
        run.average.model.load_state_dict(state.get("averaged_model") or state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    if run.scheduler:
        run.scheduler.load_state_dict(state["scheduler"])
    if run.spec.overridden("lr"):  # a new --lr replaces the checkpoint's
        set_learning_rate(run.optimizer, run.scheduler, run.spec.overridden("lr"))
    if run.protocol.curriculum:
        for s in SPLITS:
            run.splits[s].load_state_dict(state["curriculum"])
    set_rng_state(state["rng"])
    return Progress(state["epoch"], state["best"], state.get("authors_best", Progress().authors_best),
                    state["train_images"], state["train_seconds"])


def checkpoint(run, progress):
    """Everything a resume needs, in util/train/checkpoint.py's format, with the run's spec."""
    spec = run.spec
    normed = trains_with_batchnorm(spec)  # "model": the model's own architecture, its training BatchNorm folded in
    return {"model_args": model_args(spec.task, spec.fold, spec.multiplier, spec.mode, spec.align),
            "model": plain_state(run.evaluated), "run": spec.describe(),
            "training_model": run.model.state_dict() if run.average or normed else None,
            "averaged_model": run.average.model.state_dict() if run.average and normed else None,
            "dataset": spec.dataset, "recipe": spec.recipe,
            "slot_balance": run.protocol.slot_balance, "epoch": progress.epoch, "best": progress.best,
            "authors_best": progress.authors_best,
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler else None,
            "curriculum": run.splits["train"].state_dict() if run.protocol.curriculum else None,
            "train_images": progress.train_images, "train_seconds": progress.train_seconds, "rng": rng_state()}


def make_loaders(run, batch_size, rank, world):
    """(loaders, generator, sampler): training shuffled per epoch (sharded under torchrun), evaluation in order."""
    in_memory = run.spec.task.family != "cifar" and not run.options.stream_images
    workers = run.options.workers
    if workers is None:
        workers = 0 if in_memory else min(4, (os.cpu_count() or 1) - 1)
    generator = torch.Generator()
    sampler = distributed.ShardSampler(run.splits["train"], rank, world, seed=run.spec.seed) if world > 1 else None
    loading = {"num_workers": workers, "pin_memory": run.device.type == "cuda", "collate_fn": collate}
    loaders = {"train": DataLoader(run.splits["train"], batch_size, shuffle=sampler is None, sampler=sampler,
                                   generator=generator, **loading)}
    for s in ("val", "test"):  # rank 0 evaluates alone, with the whole batch
        loaders[s] = DataLoader(run.splits[s], run.spec.eval_batch_size, shuffle=False, **loading)
    return loaders, generator, sampler


def validate_and_test(run, loaders, epoch):
    """{"val": metrics, "test": metrics} of the model now."""
    metrics = {}
    for s in ("val", "test"):
        desc = f"Epoch {epoch}. {s}"
        unbalanced = dataclasses.replace(run.protocol, slot_balance=False)  # losses comparable across settings
        sums = evaluate(run.evaluated, loaders[s], run.images_per_input, run.device, run.num_classes, desc, unbalanced,
                        run.options.channels_last, run.hooks.loss)
        metrics[s] = averages(sums, run.images_per_input, desc)
    return metrics


def best_epoch(metrics, epoch, classes, images_per_input):
    """The `best` record of an epoch whose validation and test `metrics` are the best so far."""
    return {"val_top1": metrics["val"]["top1"], "epoch": epoch, "test_top1": metrics["test"]["top1"],
            "classes": classes, "val_slot_top1": slot_top1(metrics["val"], images_per_input),
            "test_slot_top1": slot_top1(metrics["test"], images_per_input)}


def end_epoch(run, loaders, progress, train_metrics, classes):
    """Rank 0's part of an epoch: validate, test, append the stats, save the checkpoints; updates `progress`."""
    spec = run.spec
    check_held(run_lock(spec.savedir), spec.savedir)  # another job took the run over while this one hung
    metrics = {"train": train_metrics, **validate_and_test(run, loaders, progress.epoch)}
    append_stats(Path(spec.savedir) / "stats", {**metrics, "train": {**train_metrics, "seconds": progress.train_seconds}})
    best = progress.best
    if classes > best["classes"]:  # a curriculum step makes validation harder: compare like with like
        best = {"val_top1": -1.0, "epoch": None, "test_top1": None, "classes": classes}
    improved = metrics["val"]["top1"] > best["val_top1"]
    if improved:
        best = best_epoch(metrics, progress.epoch, best["classes"], run.images_per_input)
    if metrics["val"]["top1"] > progress.authors_best["val_top1"]:
        progress.authors_best = {"val_top1": metrics["val"]["top1"], "epoch": progress.epoch,
                                 "test_top1": metrics["test"]["top1"]}
    progress.best, progress.epoch = best, progress.epoch + 1
    print(f"{spec.dataset} {spec.fold_name} {spec.fold} epoch {progress.epoch}/{spec.epochs}: "
          f"train loss {train_metrics['loss']:.4f} top-1 {train_metrics['top1']:.4f} | "
          f"val top-1 {metrics['val']['top1']:.4f} | test top-1 {metrics['test']['top1']:.4f}"
          + (f" | {classes}/{run.num_classes} classes" if run.protocol.curriculum else ""), flush=True)
    if improved:
        save_checkpoint(Path(spec.savedir) / "best.pth", **checkpoint(run, progress))
    if progress.epoch % run.options.checkpoint_cycle == 0 or progress.epoch == spec.epochs:
        save_checkpoint(Path(spec.savedir) / "current.pth", **checkpoint(run, progress))
    if not run.spec_written:
        write_spec(spec)
        run.spec_written = True
    return progress


def evaluate_weights(run, loaders):
    """f=1 of a user's task with --weights: the trained original evaluated on val and test instead of trained,
    saved as best.pth and current.pth (what the folded runs and every tool take) with its result.json."""
    metrics = validate_and_test(run, loaders, 0)
    progress = Progress(best=best_epoch(metrics, None, run.num_classes, run.images_per_input),
                        authors_best={"val_top1": metrics["val"]["top1"], "epoch": None,
                                      "test_top1": metrics["test"]["top1"]})
    print(f"{run.spec.dataset} fold 1: --weights {run.spec.weights} evaluated, not trained: val top-1 "
          f"{metrics['val']['top1']:.4f} | test top-1 {metrics['test']['top1']:.4f}", flush=True)
    for name in ("best.pth", "current.pth"):
        save_checkpoint(Path(run.spec.savedir) / name, **checkpoint(run, progress))
    return write_result(run, progress)


def batch_lr_setter(run, epoch):
    """For a per-batch schedule (onecycle, cosine), the `set_lr(fraction of epoch)` of train_one_epoch: the rate
    follows from the epoch alone, so a resumed run continues on the same curve. None for the others."""
    if run.protocol.schedule not in ("onecycle", "cosine"):
        return None

    def set_lr(fraction):
        lr = run.protocol.lr * lr_factor(run.protocol.schedule, (epoch + fraction) / run.spec.epochs)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
    return set_lr


def batch_transform(run, epoch):
    """train_one_epoch's `transform(fraction of epoch)`: the run's augmentation at that point of training (Hooks.transform:
    the protocol's slot curriculum, shift and mixup by default, None where there is nothing to do), followed, in a
    consistent distilled run, by the teacher's targets of the augmented images (consistent_targets)."""
    per_input, epochs = run.images_per_input, run.spec.epochs

    def transform(fraction):
        change = run.hooks.transform(run.protocol, per_input, (epoch + fraction) / epochs)
        if change is None or run.teacher is None:
            return change
        return lambda batch: consistent_targets(change(batch), run.teacher, run.device, run.spec.amp)
    return transform


@torch.no_grad()
def consistent_targets(batch, teacher, device, amp=None):
    """`batch` (images, labels, targets) with the teacher's logits of its images, as augmented, as the targets (on
    `device`, in the run's autocast): the student learns what the teacher says of the view it sees."""
    images, labels, _ = batch
    with torch.autocast(device.type, AMP_DTYPES.get(amp, torch.float16), enabled=amp is not None):
        logits = teacher(images.to(device, non_blocking=True))
    return images, labels, logits.float()


FAR_BELOW = 0.10  # a folded run whose best validation top-1 is this far below its original's has fallen behind
BEHIND_FIX = ("try more epochs (--student_epochs), a smaller fold, or another start (--init); docs/own_cnn.md, "
              "'When a folded model falls behind'")


def teacher_val_top1(splits, num_classes):
    """The teacher's top-1 on the validation split of a distilled run (from its targets' logits), else None."""
    val = splits["val"]
    return targets_top1(val.logits, val.targets, num_classes) if isinstance(val, DistillationDataset) else None


def behind_note(result, reference_val_top1, reference="its teacher"):
    """One line when folded run `result` (result.json) ended far below `reference` on validation, else None."""
    if (result["fold"] == 1 or reference_val_top1 is None or result.get("best_val_top1") is None
            or result.get("mode") == "efficientnet"):
        return None
    drop = reference_val_top1 - result["best_val_top1"]
    if drop < FAR_BELOW:
        return None
    trained = complete_lines(Path(result["savedir"]) / "stats" / "train_top1.txt") if result.get("savedir") else []
    fit = f" while its training top-1 reached {float(trained[-1]):.3f}" if trained else ""
    return (f"warning: {result['dataset']} fold {result['fold']} fell behind: best validation top-1 "
            f"{result['best_val_top1']:.3f}, {100 * drop:.1f} points below {reference}'s {reference_val_top1:.3f}"
            f"{fit}; {BEHIND_FIX}")


def write_result(run, progress):
    """result.json: the run's identity, its best epoch (this project's and the authors'), per-slot top-1, speed;
    a line when a folded run fell far behind its teacher (behind_note)."""
    spec, best = run.spec, progress.best
    result = {"dataset": spec.dataset, "fold": spec.fold, "mode": spec.mode, "recipe": spec.recipe,
              "multiplier": None if spec.multiplier is None else round(spec.multiplier, 6),
              "align": spec.align, "slot_balance": run.protocol.slot_balance, "epochs": spec.epochs,
              "best_epoch": best["epoch"], "best_val_top1": best["val_top1"], "test_top1": best["test_top1"],
              "val_slot_top1": best.get("val_slot_top1"), "test_slot_top1": best.get("test_slot_top1"),
              "worst_slot_test_top1": min(best.get("test_slot_top1") or [best["test_top1"]]),
              "authors_best_epoch": progress.authors_best["epoch"],
              "authors_best_val_top1": progress.authors_best["val_top1"],
              "authors_test_top1": progress.authors_best["test_top1"],
              "train_images_per_sec": progress.train_images / progress.train_seconds if progress.train_seconds else 0.0,
              "train_seconds": progress.train_seconds, "precision": spec.precision,
              "teacher_val_top1": teacher_val_top1(run.splits, run.num_classes), **spec.describe_user_task()}
    write_json_atomic(Path(spec.savedir) / "result.json", result)
    note = behind_note({**result, "savedir": spec.savedir}, result["teacher_val_top1"])
    if note:
        print(note, flush=True)
    return result


def train(spec, options=Options(), hooks=Hooks()):
    """Train (or resume) the run `spec` describes, varied by `hooks`, holding its run directory (util.train.ownership;
    RunHeld if another job holds it); returns the result dict also written to result.json."""
    rank, world, device = distributed.setup(options.device)
    state = check_run(spec, options, device, world)
    spec = resumed_spec(spec, state) if state else spec
    with holding(run_lock(spec.savedir), spec.savedir):
        return train_held(spec, options, hooks, state, rank, world, device)


def train_held(spec, options, hooks, state, rank, world, device):
    """train()'s work once the run directory is held: every epoch from the checkpoint `state` (or the start)."""
    run, state = setup_run(spec, options, device, world, hooks, state)
    progress = restore(run, state) if state else Progress()
    train_model = run.model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(run.model, device_ids=device_ids)
    batch = per_rank_batch(spec.batch_size, run.images_per_input, world)
    loaders, generator, sampler = make_loaders(run, batch, rank, world)
    if spec.weights:
        return distributed.on_main(evaluate_weights, run, loaders)
    if not state and spec.seconds_bound:  # the recipe's budget: the epochs that fit in its seconds, timed here
        spec = run.spec = bounded_spec(run, loaders, batch_transform(run, 0), world)
        distributed.on_main(write_spec, spec)

    for epoch in range(progress.epoch, spec.epochs):
        classes = run.num_classes
        if run.protocol.curriculum:
            classes = [run.splits[s].set_epoch(epoch) for s in SPLITS][0]
        generator.manual_seed(spec.seed + epoch)
        if sampler:
            sampler.set_epoch(epoch)
            seed_everything(spec.seed + epoch * world + rank)  # each rank its own augmentation, the same on resume
        tic = time.perf_counter()
        with train_model.join() if world > 1 else contextlib.nullcontext():  # ranks may have a batch more or less
            sums = train_one_epoch(train_model, loaders["train"], run.optimizer, run.scaler, run.images_per_input,
                                   device, run.num_classes, f"Epoch {epoch}. train", run.protocol, spec.amp,
                                   batch_lr_setter(run, epoch), run.options.channels_last, batch_transform(run, epoch),
                                   run.hooks.loss)
        totals = dict(zip(sums, distributed.all_sum(list(sums.values()), device)))
        train_metrics = averages(totals, run.images_per_input, f"Epoch {epoch}. train")
        progress.train_seconds += time.perf_counter() - tic
        progress.train_images += train_metrics["images"]
        if run.scheduler:
            run.scheduler.step()
        progress = distributed.on_main(end_epoch, run, loaders, progress, train_metrics, classes)
    return distributed.on_main(write_result, run, progress)


def error_message(error):
    """`error`'s message; for one raised in a data-loader worker, the worker's own one-line message.

    PyTorch re-raises a worker's error as "Caught ... in DataLoader worker ...", its traceback, then "Type: message".
    """
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return str(error)
