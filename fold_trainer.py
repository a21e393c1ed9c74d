"""Train one FoldedCNN (dataset, fold) with the paper's protocol (docs/protocol.md, section 3), or with
--recipe distill as a student of the trained original (section 8).

Every epoch trains, then validates and tests. It writes, in --savedir: one stats file per split and
metric (`stats/<split>_<metric>.txt`, one line appended per epoch), `current.pth` every
--checkpoint_cycle epochs, `best.pth` on a better validation top-1, and `result.json` when the run
is finished. A run continues from a checkpoint with --continue_from_file.

Under `torchrun --nproc_per_node N fold_trainer.py ...` it trains with DistributedDataParallel: each
rank trains on its own 1/N of every epoch's images, in batches of --batch_size / N (a multiple of
f); training metrics are summed over the ranks; rank 0 alone validates, tests and writes files.
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from config.tasks import SPLITS, all_tasks, resolve_dataset
from datasets import (DATA_DIR, CurriculumDataset, DataMissing, DistillationDataset, curriculum_schedule,
                      load_splits)
from datasets.loaders import split_targets
from models import build_classifier
from models.fold import check_align, check_fold, check_multiplier
from util.train import distributed
from util.train.checkpoint import (load_classifier, model_args, read_training_state, rng_state, save_checkpoint,
                             set_rng_state)
from util.core.cli import positive_int
from util.core.device import cpu_bf16_problem, seed_everything
from util.core.files import append_line, keep_lines, save_atomic, write_json_atomic

TOPK = (1, 2, 5, 10)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How the paper trains one (task, fold)."""

    epochs: int
    optimizer: str  # "rmsprop" or "adam"
    lr: float
    weight_decay: float = 0.0
    lr_step: int = 0  # halve the learning rate every lr_step epochs (schedule "step")
    schedule: str = "constant"  # of the learning rate: "constant", "step", "onecycle" or "cosine" (per batch)
    loss: str = "ce"  # "ce" (labels), or a distillation loss on the teacher's logits: "mse", "kl", "mse+ce", "kl+ce"
    temperature: float = 1.0  # of the "kl" losses
    curriculum: bool = False
    slow_curriculum: bool = False
    slot_balance: bool = False  # weigh each slot's loss by its size: a slot that lags behind learns faster

    @property
    def distill(self):
        """Whether the run learns from a teacher's logits."""
        return self.loss != "ce"


RECIPES = ("paper", "distill")
DISTILL_LOSSES = ("mse", "kl", "mse+ce", "kl+ce")
SCHEDULES = ("constant", "step", "onecycle", "cosine")
ONECYCLE_WARMUP, ONECYCLE_START = 0.3, 1 / 25  # share of training spent warming up from 1/25 of the rate


def run_shape(args):
    """(task, fold, multiplier, protocol, group) of a run; group = images per model input. The compound-scaled
    baseline (--mode efficientnet, fold = phi, a game task) trains with the original game CNN's protocol, one
    image per input and no multiplier (None)."""
    task, fold, multiplier, protocol, group = _shape(args)
    return task, fold, multiplier, with_overrides(protocol, args, group), group


def _shape(args):
    task, _ = resolve_dataset(args.dataset)
    fold = check_fold(args.fold)
    if args.mode != "efficientnet":
        protocol = distill_protocol(task, fold) if args.recipe == "distill" else paper_protocol(task, fold)
        return task, fold, check_multiplier(args.multiplier, fold), protocol, fold
    if args.recipe != "paper":
        raise ValueError("--mode efficientnet trains the original game CNN's protocol: drop --recipe distill")
    if task.family != "game":
        baselines = " ".join(n for n, t in all_tasks().items() if t.compound_scaling_baseline)
        raise ValueError(f"--mode efficientnet trains the compound-scaled game CNN; {args.dataset} is a "
                         f"{task.family} task: choose game tasks (--datasets {baselines})")
    if args.multiplier is not None or getattr(args, "align", 1) != 1:
        raise ValueError("--mode efficientnet scales by phi (the fold): drop --multiplier and --align")
    return task, fold, None, paper_protocol(task, 1), 1


def run_align(args, fold):
    """The --align of a run: widened layers rounded up to a multiple of it (a FoldedCNN, f > 1); 1 otherwise."""
    return check_align(getattr(args, "align", 1)) if args.mode != "efficientnet" and fold > 1 else 1


def run_recipe(args, group):
    """The recipe a run trains with: --recipe for a folded run; "paper" for the original (and the compound-scaled
    baseline), which trains as the paper's under either recipe and is shared by both."""
    return args.recipe if group > 1 else "paper"


def fold_name(mode):
    """What the fold number means in messages: phi for the compound-scaled baseline, else the fold."""
    return "phi" if mode == "efficientnet" else "fold"


def paper_protocol(task, fold):
    """The protocol of docs/protocol.md's table for `task` at fold `fold`."""
    if task.family == "noscope":
        return Protocol(epochs=50, optimizer="rmsprop", lr=0.001 / 1.5)
    if task.family == "game":
        slow = fold in task.slow_curriculum_folds
        return Protocol(epochs=3000 if slow else 1500, optimizer="adam", lr=1e-4, weight_decay=1e-5,
                        curriculum=fold > 1, slow_curriculum=slow)
    distill = task.distill_folded and fold > 1
    # The authors' StepLR(200, 0.5) applies to runs trained on CIFAR itself, not to distilled ones (folded
    # CIFAR-10), which keep 1e-4 for all 1500 epochs.
    return Protocol(epochs=1500, optimizer="adam", lr=1e-4, weight_decay=1e-5, lr_step=0 if distill else 200,
                    schedule="constant" if distill else "step", loss="mse" if distill else "ce")


# The distill recipe's settings for folded runs, per family, chosen by results/accuracy/choices.md (CIFAR's
# were not measured: they are the game tasks').
_ONECYCLE = {"loss": "kl", "temperature": 4.0, "optimizer": "adam", "lr": 1e-3, "schedule": "onecycle",
             "curriculum": False, "slot_balance": True}
DISTILL = {"game": _ONECYCLE, "cifar": _ONECYCLE,
           "noscope": {**_ONECYCLE, "schedule": "constant", "slot_balance": False}}


def distill_protocol(task, fold):
    """The distill recipe (docs/protocol.md, section 8): a folded student learns the trained original's
    (f=1) logits with its family's DISTILL settings; the original itself trains as the paper's."""
    paper = paper_protocol(task, fold)
    if fold == 1:
        return paper
    recipe = DISTILL[task.family]
    return Protocol(epochs=paper.epochs, optimizer=recipe["optimizer"], lr=recipe["lr"],
                    weight_decay=paper.weight_decay, schedule=recipe["schedule"], loss=recipe["loss"],
                    temperature=recipe["temperature"], curriculum=recipe["curriculum"],
                    slow_curriculum=paper.slow_curriculum, slot_balance=recipe["slot_balance"])


def with_overrides(protocol, args, group):
    """`protocol` with the flags that change it: --optimizer, --lr and --lr_schedule for every run; --distill_loss,
    --temperature and --curriculum for folded runs only (the original stays a teacher trained on labels)."""
    changes = {"lr": args.lr} if args.lr else {}
    if args.optimizer:
        changes["optimizer"] = args.optimizer
    if args.lr_schedule:
        if args.lr_schedule == "step" and not protocol.lr_step:
            changes["lr_step"] = 200
        changes["schedule"] = args.lr_schedule
    if group > 1:
        if args.distill_loss:
            changes["loss"] = args.distill_loss
        if args.temperature:
            changes["temperature"] = args.temperature
        if args.curriculum:
            changes["curriculum"] = args.curriculum == "on"
        if getattr(args, "slot_balance", None):
            changes["slot_balance"] = args.slot_balance == "on"
    return dataclasses.replace(protocol, **changes)


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
    """One (dataset, fold) run: what it trains, with what, and where it writes."""

    args: argparse.Namespace
    task: object
    fold: int
    multiplier: float
    protocol: Protocol
    epochs: int
    device: torch.device
    savedir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    splits: dict
    group: int  # images per model input: f for a FoldedCNN, 1 for the compound-scaled baseline


def make_optimizer(model, protocol):
    """The protocol's optimizer, in its multi-tensor implementation (fused Adam; 8x faster steps than the
    per-parameter loop on a CPU for NoScope's 5M parameters: results/accuracy/choices.md)."""
    if protocol.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay,
                                   foreach=True)
    return torch.optim.Adam(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay, fused=True)


def set_learning_rate(optimizer, scheduler, lr):
    """A resumed run with a new --lr: `lr` replaces the base rate; the schedule's decay so far is kept."""
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        group["lr"] = lr * group["lr"] / base
        if "initial_lr" in group:
            group["initial_lr"] = lr
    if scheduler:
        scheduler.base_lrs = [lr] * len(optimizer.param_groups)


def load_teacher(path, task, device):
    """The original (f=1) model of `task` from `path` (a checkpoint of this repository, or a plain state dict)."""
    fix = "pass the trained original's best.pth (or model.pth) with --teacher"
    teacher, state = load_classifier(path, device, task=task, what="teacher", fix=fix)
    args = state.get("model_args", {"task": task.name, "fold": 1})
    if args["fold"] != 1:
        raise ValueError(f"teacher {path} is a fold-{args['fold']} model; the teacher must be the original (fold 1)")
    if args["task"] != task.name:
        raise ValueError(f"teacher {path} is a model of {args['task']}, not {task.name}; {fix}")
    return teacher


@torch.no_grad()
def teacher_logits(teacher, data, device, cache):
    """The teacher's logits for every sample of `data` (un-augmented), in its order: computed once into `cache`
    and read from there while the cache holds as many samples with the same labels in the same order."""
    labels = torch.tensor(split_targets(data))
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        if isinstance(saved, dict) and torch.equal(saved["targets"], labels):
            return saved["logits"]
    loader = DataLoader(data, batch_size=256, shuffle=False)
    logits = torch.cat([teacher(images.to(device)).float().cpu() for images, _ in loader])
    save_atomic({"logits": logits, "targets": labels}, cache)
    return logits


def distillation_targets(args, task, fold, device, savedir):
    """The teacher's logits for each split (cached in `savedir`): the regression targets of distillation.

    Prints the teacher's top-1 on each split's labels, so that a wrong teacher shows at once."""
    teacher = load_teacher(args.teacher, task, device)
    plain = load_splits(args.dataset, fold, args.data_dir, args.data_root, args.seed, augment=False,
                        val_size=args.val_size)
    targets = {s: teacher_logits(teacher, plain[s], device, savedir / f"teacher_logits_{s}.pt") for s in SPLITS}
    accuracy = {s: (targets[s].argmax(1) == torch.tensor(split_targets(plain[s]))).float().mean().item()
                for s in SPLITS}
    print(f"teacher {args.teacher}: top-1 " + ", ".join(f"{s} {accuracy[s]:.4f}" for s in SPLITS), flush=True)
    return targets


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def training_loss(logits, labels, teacher, protocol, fold=1):
    """The loss of `protocol` for fp32 `logits` (one row per image, folded groups of `fold` consecutive rows):
    cross-entropy to `labels`, or a distillation loss to the teacher's logits: "mse" regresses them (the paper's
    CIFAR-10 students), "kl" matches the softened distributions (KL divergence at the temperature, times its
    square), "+ce" averages either with cross-entropy. With `slot_balance`, the mean of each slot's loss (position
    j of every group) is weighted by its share (detached, mean weight 1), so a lagging slot gets more gradient."""
    balance = protocol.slot_balance and fold > 1
    reduction = "none" if balance else "mean"  # unbalanced: PyTorch's own reductions, the same numbers as before
    if protocol.loss == "ce":
        loss = F.cross_entropy(logits, labels, reduction=reduction)
    else:
        if protocol.loss.startswith("mse"):
            loss = F.mse_loss(logits, teacher, reduction=reduction)
            loss = loss.mean(dim=1) if balance else loss
        else:
            t = protocol.temperature
            loss = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                            reduction="none" if balance else "batchmean")
            loss = (loss.sum(dim=1) if balance else loss) * t * t
        if protocol.loss.endswith("+ce"):
            loss = (loss + F.cross_entropy(logits, labels, reduction=reduction)) / 2
    if not balance:
        return loss
    slots = loss.reshape(-1, fold).mean(dim=0)
    weights = (slots / slots.mean().clamp_min(1e-12)).detach()
    return (weights * slots).mean()


def lr_factor(schedule, progress):
    """The learning rate as a multiple of the base rate at `progress` (0 to 1) of training, for the per-batch
    schedules: "cosine" decays from 1 to 0; "onecycle" warms up linearly from 1/25 over the first 30%, then
    decays as the cosine; "constant" and "step" (an epoch scheduler's) give 1."""
    if schedule == "onecycle":
        if progress < ONECYCLE_WARMUP:
            return ONECYCLE_START + (1 - ONECYCLE_START) * progress / ONECYCLE_WARMUP
        progress = (progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
    elif schedule != "cosine":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batch_step(model, batch, fold, device, ks, protocol, amp=None):
    """Forward one batch (cropped to a multiple of f): (loss, hits, images); None if under f images.

    hits: `top<k>` for each k, and for f > 1 `slot<j>`, the top-1 hits of the images at position j of their
    folded group (a model that starves one slot shows there). `amp` ("fp16" or "bf16"): forward under that
    autocast (mixed precision) instead of fp32."""
    n = (batch[0].shape[0] // fold) * fold
    if n == 0:
        return None
    images, labels = batch[0][:n].to(device, non_blocking=True), batch[1][:n].to(device, non_blocking=True)
    with torch.autocast(device.type, AMP_DTYPES.get(amp, torch.float16), enabled=amp is not None):
        logits = model(images)
    teacher = batch[2][:n].to(device) if len(batch) > 2 else None
    loss = training_loss(logits.float(), labels, teacher, protocol, fold)
    ranked = logits.detach().topk(max(ks), dim=1).indices == labels[:, None]
    hits = {f"top{k}": ranked[:, :k].any(dim=1).sum().item() for k in ks}
    if fold > 1:
        hits.update({f"slot{j}": int(c) for j, c in enumerate(ranked[:, 0].reshape(-1, fold).sum(dim=0).tolist())})
    return loss, hits, n


class Totals:
    """Sums over an epoch's images (sums, so that ranks can add theirs up): loss x images, top-k hits, images."""

    def __init__(self, ks, fold=1):
        slots = {f"slot{j}": 0 for j in range(fold)} if fold > 1 else {}  # the same keys on every rank
        self.sums = {"loss": 0.0, **{f"top{k}": 0 for k in ks}, **slots, "images": 0}

    def add(self, loss, hits, n):
        self.sums["loss"] += loss.item() * n
        for name, hit in hits.items():
            self.sums[name] += hit
        self.sums["images"] += n

    def describe(self, desc):
        seen = self.sums["images"]
        shown = [f"Top-{k}={self.sums[f'top{k}'] / seen:.4f}" for k in (1, 5) if f"top{k}" in self.sums]
        return f"{desc}. {', '.join(shown)}, Loss={self.sums['loss'] / seen:.4f}"


def progress_bar(loader, desc):
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                disable=None if distributed.is_main() else True)  # bars on rank 0's terminal only


def check_finite(loss, desc):
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{desc}: the loss became {loss.item()}; lower the learning rate or check the data")


def train_one_epoch(model, loader, optimizer, scaler, fold, device, num_classes, desc, protocol, amp=None,
                    set_lr=None):
    """One pass over `loader`, updating `model` (under `amp` autocast if given); returns the epoch's sums.

    `set_lr(fraction)`, if given, sets the learning rate before each batch (`fraction` of the epoch done)."""
    model.train()
    ks = [k for k in TOPK if k <= num_classes]
    totals = Totals(ks, fold)
    bar = progress_bar(loader, desc)
    for i, batch in enumerate(bar):
        if set_lr:
            set_lr(i / len(loader))
        step = batch_step(model, batch, fold, device, ks, protocol, amp)
        if step is None:
            continue
        check_finite(step[0], desc)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(step[0]).backward()
        scaler.step(optimizer)
        scaler.update()
        totals.add(*step)
        bar.set_description(totals.describe(desc))
    return totals.sums


@torch.no_grad()
def evaluate(model, loader, fold, device, num_classes, desc, protocol):
    """Loss (the training loss of `protocol`) and top-k over `loader` without updating `model`; returns the sums
    (see Totals)."""
    model.eval()
    ks = [k for k in TOPK if k <= num_classes]
    totals = Totals(ks, fold)
    bar = progress_bar(loader, desc)
    for batch in bar:
        step = batch_step(model, batch, fold, device, ks, protocol)
        if step is None:
            continue
        check_finite(step[0], desc)
        totals.add(*step)
        bar.set_description(totals.describe(desc))
    return totals.sums


def averages(sums, fold, desc):
    """Mean loss and top-k accuracy (per slot: over the images at that position) from train_one_epoch's or
    evaluate's sums."""
    images = int(sums["images"])
    if images == 0:
        raise ValueError(f"{desc}: no batch of at least {fold} images; this split needs more images")
    return {**{k: v / (images // fold if k.startswith("slot") else images) for k, v in sums.items() if k != "images"},
            "images": images}


def slot_top1(metrics, group):
    """Top-1 accuracy per position in the folded group, [slot 0, ..., slot f-1] (None for f = 1)."""
    return [metrics[f"slot{j}"] for j in range(group)] if group > 1 else None


def per_rank_batch(batch_size, fold, world):
    """Each of `world` processes' share of --batch_size, rounded down to a multiple of f; a ValueError if none."""
    share = (batch_size // world // fold) * fold
    if share < fold:
        processes = f" x {world} processes" if world > 1 else ""
        raise ValueError(f"--batch_size {batch_size} is smaller than the fold {fold}{processes}: "
                         f"use at least {fold * world}")
    return share


def prepare_savedir(savedir, epochs_done):
    """Create savedir/stats, remove a killed run's unfinished writes, and keep `epochs_done` lines of each
    stats file (a line past the checkpoint, or one torn by a crash, is dropped)."""
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
    """Append this epoch's line to each stats file (`<split>_<metric>.txt`)."""
    for split, values in metrics.items():
        for name, value in values.items():
            if name != "images" and not name.startswith("slot"):
                append_line(stats_dir / f"{split}_{name}.txt", f"{value:.6f}")


def build_splits(args, task, fold, protocol, epochs, device, savedir):
    """The train/val/test datasets of the run: with teacher logits when distilling, a curriculum when scheduled."""
    splits = load_splits(args.dataset, fold, args.data_dir, args.data_root, args.seed, args.download,
                         val_size=args.val_size, cache=not args.stream_images)
    if protocol.distill:
        if not args.teacher:
            raise ValueError(f"{args.dataset} at fold {fold} is trained by distillation: pass --teacher "
                             f"(the trained original's best.pth or model_files/{task.name}/original/model.pth)")
        targets = distributed.on_main(distillation_targets, args, task, fold, device, savedir)
        splits = {s: DistillationDataset(splits[s], targets[s]) for s in SPLITS}
    if protocol.curriculum:
        start, step, gap = curriculum_schedule(task.num_classes, fold, epochs, protocol.epochs, protocol.slow_curriculum)
        splits = {s: CurriculumDataset(d, task.num_classes, start, step, gap) for s, d in splits.items()}
    return splits


def setup_run(args):
    """Check the arguments, load the data and build the model and optimizer; returns (Run, checkpoint or None)."""
    task, fold, multiplier, protocol, group = run_shape(args)
    epochs = args.epochs or protocol.epochs
    _, world, device = distributed.setup(args.device)
    no_bf16 = cpu_bf16_problem(fix="drop --amp")
    if args.amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--amp (fp16 mixed precision) needs CUDA, and this run is on {device}: drop --amp"
                         + ("" if no_bf16 else ", or use --amp bf16"))
    if args.amp == "bf16" and device.type == "cpu" and no_bf16:
        raise ValueError(f"--amp bf16: {no_bf16}")
    per_rank_batch(args.batch_size, group, world)
    state = None  # checked before anything is written or loaded
    if args.continue_from_file:
        state = read_training_state(args.continue_from_file, args.dataset, fold, multiplier, device, args.mode,
                                    run_align(args, fold))
        if state.get("recipe", "paper") != run_recipe(args, group):
            raise ValueError(f"checkpoint {args.continue_from_file} was trained with --recipe {state.get('recipe', 'paper')}"
                             f": resume it with that recipe, or start a new --savedir")
        if state.get("slot_balance", False) != protocol.slot_balance:  # checkpoints before it: balance off
            was = "on" if state.get("slot_balance", False) else "off"
            raise ValueError(f"checkpoint {args.continue_from_file} was trained with --slot_balance {was}: resume it "
                             f"with --slot_balance {was}, or start a new --savedir")
    savedir = Path(args.savedir)
    if not state and (savedir / "current.pth").exists():
        raise ValueError(f"{savedir} already holds a run: resume it with --continue_from_file "
                         f"{savedir / 'current.pth'}, or choose another --savedir")
    distributed.on_main(prepare_savedir, savedir, state["epoch"] if state else 0)
    seed_everything(args.seed)
    splits = build_splits(args, task, group, protocol, epochs, device, savedir)
    model = build_classifier(task, fold, multiplier, args.mode, run_align(args, fold)).to(device)
    optimizer = make_optimizer(model, protocol)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, protocol.lr_step, 0.5) if protocol.schedule == "step" else None
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")  # bf16 needs no loss scaling
    run = Run(args, task, fold, multiplier, protocol, epochs, device, savedir, model, optimizer, scheduler, scaler,
              splits, group)
    return run, state


def restore(run, state):
    """Continue from a training checkpoint: weights, optimizer, schedules and random generators; returns Progress."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    if run.scheduler:
        run.scheduler.load_state_dict(state["scheduler"])
    if run.args.lr:
        set_learning_rate(run.optimizer, run.scheduler, run.args.lr)
    if run.protocol.curriculum:
        for s in SPLITS:
            run.splits[s].load_state_dict(state["curriculum"])
    set_rng_state(state["rng"])
    return Progress(state["epoch"], state["best"], state.get("authors_best", Progress().authors_best),
                    state["train_images"], state["train_seconds"])


def checkpoint(run, progress):
    """Everything a resume needs, in util/train/checkpoint.py's format."""
    return {"model_args": model_args(run.task, run.fold, run.multiplier, run.args.mode, run_align(run.args, run.fold)),
            "model": run.model.state_dict(),
            "dataset": run.args.dataset, "recipe": run_recipe(run.args, run.group),
            "slot_balance": run.protocol.slot_balance, "epoch": progress.epoch, "best": progress.best,
            "authors_best": progress.authors_best,
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler else None,
            "curriculum": run.splits["train"].state_dict() if run.protocol.curriculum else None,
            "train_images": progress.train_images, "train_seconds": progress.train_seconds, "rng": rng_state()}


def make_loaders(run, batch_size, rank, world):
    """(loaders, generator, sampler): training shuffled per epoch (sharded under torchrun), evaluation in order."""
    in_memory = run.task.family != "cifar" and not run.args.stream_images
    workers = run.args.workers
    if workers is None:
        workers = 0 if in_memory else min(4, (os.cpu_count() or 1) - 1)
    generator = torch.Generator()
    sampler = distributed.ShardSampler(run.splits["train"], rank, world, seed=run.args.seed) if world > 1 else None
    loading = {"num_workers": workers, "pin_memory": run.device.type == "cuda"}
    loaders = {"train": DataLoader(run.splits["train"], batch_size, shuffle=sampler is None, sampler=sampler,
                                   generator=generator, **loading)}
    for s in ("val", "test"):  # rank 0 evaluates alone, with the whole batch
        loaders[s] = DataLoader(run.splits[s], (run.args.batch_size // run.group) * run.group, shuffle=False, **loading)
    return loaders, generator, sampler


def end_epoch(run, loaders, progress, train_metrics, classes):
    """Rank 0's part of an epoch: validate, test, append the stats, save the checkpoints; updates `progress`."""
    metrics = {"train": train_metrics}
    for s in ("val", "test"):
        desc = f"Epoch {progress.epoch}. {s}"
        unbalanced = dataclasses.replace(run.protocol, slot_balance=False)  # losses comparable across settings
        metrics[s] = averages(evaluate(run.model, loaders[s], run.group, run.device, run.task.num_classes, desc,
                                       unbalanced), run.group, desc)
    append_stats(run.savedir / "stats", metrics)
    best = progress.best
    if classes > best["classes"]:  # a curriculum step makes validation harder: compare like with like
        best = {"val_top1": -1.0, "epoch": None, "test_top1": None, "classes": classes}
    improved = metrics["val"]["top1"] > best["val_top1"]
    if improved:
        best = {**best, "val_top1": metrics["val"]["top1"], "epoch": progress.epoch, "test_top1": metrics["test"]["top1"],
                "val_slot_top1": slot_top1(metrics["val"], run.group), "test_slot_top1": slot_top1(metrics["test"], run.group)}
    if metrics["val"]["top1"] > progress.authors_best["val_top1"]:
        progress.authors_best = {"val_top1": metrics["val"]["top1"], "epoch": progress.epoch,
                                 "test_top1": metrics["test"]["top1"]}
    progress.best, progress.epoch = best, progress.epoch + 1
    print(f"{run.args.dataset} {fold_name(run.args.mode)} {run.fold} epoch {progress.epoch}/{run.epochs}: "
          f"train loss {train_metrics['loss']:.4f} top-1 {train_metrics['top1']:.4f} | "
          f"val top-1 {metrics['val']['top1']:.4f} | test top-1 {metrics['test']['top1']:.4f}"
          + (f" | {classes}/{run.task.num_classes} classes" if run.protocol.curriculum else ""), flush=True)
    if improved:
        save_checkpoint(run.savedir / "best.pth", **checkpoint(run, progress))
    if progress.epoch % run.args.checkpoint_cycle == 0 or progress.epoch == run.epochs:
        save_checkpoint(run.savedir / "current.pth", **checkpoint(run, progress))
    return progress


def batch_lr_setter(run, epoch):
    """For a per-batch schedule (onecycle, cosine), the `set_lr(fraction of epoch)` of train_one_epoch: the rate
    follows from the epoch alone, so a resumed run continues on the same curve. None for the others."""
    if run.protocol.schedule not in ("onecycle", "cosine"):
        return None

    def set_lr(fraction):
        lr = run.protocol.lr * lr_factor(run.protocol.schedule, (epoch + fraction) / run.epochs)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
    return set_lr


def write_result(run, progress):
    result = {"dataset": run.args.dataset, "fold": run.fold, "mode": run.args.mode, "recipe": run_recipe(run.args, run.group),
              "multiplier": None if run.multiplier is None else round(run.multiplier, 6),
              "align": run_align(run.args, run.fold), "slot_balance": run.protocol.slot_balance, "epochs": run.epochs, "best_epoch": progress.best["epoch"], "best_val_top1": progress.best["val_top1"],
              "test_top1": progress.best["test_top1"],
              "val_slot_top1": progress.best.get("val_slot_top1"), "test_slot_top1": progress.best.get("test_slot_top1"),
              "worst_slot_test_top1": min(progress.best.get("test_slot_top1") or [progress.best["test_top1"]]),
              "authors_best_epoch": progress.authors_best["epoch"],
              "authors_best_val_top1": progress.authors_best["val_top1"],
              "authors_test_top1": progress.authors_best["test_top1"],
              "train_images_per_sec": progress.train_images / progress.train_seconds if progress.train_seconds else 0.0,
              "train_seconds": progress.train_seconds}
    write_json_atomic(run.savedir / "result.json", result)
    return result


def main(args):
    """Train one (dataset, fold) as `args` says; returns the result dict also written to result.json."""
    run, state = setup_run(args)
    progress = restore(run, state) if state else Progress()
    rank, world, _ = distributed.setup(args.device)
    train_model = run.model
    if world > 1:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        train_model = DistributedDataParallel(run.model, device_ids=device_ids)
    loaders, generator, sampler = make_loaders(run, per_rank_batch(args.batch_size, run.group, world), rank, world)

    for epoch in range(progress.epoch, run.epochs):
        classes = run.task.num_classes
        if run.protocol.curriculum:
            classes = [run.splits[s].set_epoch(epoch) for s in SPLITS][0]
        generator.manual_seed(args.seed + epoch)
        if sampler:
            sampler.set_epoch(epoch)
            seed_everything(args.seed + epoch * world + rank)  # each rank its own augmentation, the same on resume
        tic = time.perf_counter()
        with train_model.join() if world > 1 else contextlib.nullcontext():  # ranks may have a batch more or less
            sums = train_one_epoch(train_model, loaders["train"], run.optimizer, run.scaler, run.group, run.device,
                                   run.task.num_classes, f"Epoch {epoch}. train", run.protocol, args.amp,
                                   batch_lr_setter(run, epoch))
        train_metrics = averages(dict(zip(sums, distributed.all_sum(list(sums.values()), run.device))), run.group,
                                 f"Epoch {epoch}. train")
        progress.train_seconds += time.perf_counter() - tic
        progress.train_images += train_metrics["images"]
        if run.scheduler:
            run.scheduler.step()
        progress = distributed.on_main(end_epoch, run, loaders, progress, train_metrics, classes)
    return distributed.on_main(write_result, run, progress)


LOSS_NAMES = {"ce": "cross-entropy", "mse": "mse to the teacher's logits",
              "kl": "kl to the teacher's softened outputs", "mse+ce": "mean of mse to the teacher's logits and "
              "cross-entropy", "kl+ce": "mean of kl to the teacher's softened outputs and cross-entropy"}


def resolved_protocol(args):
    """What a run of `args` will do, as a JSON-able dict (--dry_run prints it): nothing is read or trained."""
    task, fold, multiplier, protocol, group = run_shape(args)
    epochs = args.epochs or protocol.epochs
    curriculum = None
    if protocol.curriculum:
        start, step, gap = curriculum_schedule(task.num_classes, fold, epochs, protocol.epochs, protocol.slow_curriculum)
        curriculum = {"start": start, "step": step, "gap": gap}
    mode = args.mode if args.mode == "efficientnet" else "original" if fold == 1 else "folded"
    schedules = {"step": f"StepLR(step_size={protocol.lr_step}, gamma=0.5)", "onecycle": "one-cycle (per batch)",
                 "cosine": "cosine (per batch)"}
    return {"dataset": args.dataset, "fold": fold, "mode": mode, "recipe": run_recipe(args, group),
            "multiplier": None if multiplier is None else round(multiplier, 6), "align": run_align(args, fold),
            "epochs": epochs, "optimizer": protocol.optimizer,
            "lr": protocol.lr, "weight_decay": protocol.weight_decay,
            "lr_schedule": schedules.get(protocol.schedule, protocol.schedule), "loss": LOSS_NAMES[protocol.loss],
            "temperature": protocol.temperature if protocol.loss.startswith("kl") else None,
            "slot_balance": protocol.slot_balance,
            "curriculum": curriculum, "precision": f"amp {args.amp}" if args.amp else "fp32", "seed": args.seed,
            "batch_size": (args.batch_size // group) * group, "teacher": args.teacher if protocol.distill else None,
            "savedir": args.savedir}


def error_message(error):
    """`error`'s message; for one raised in a data-loader worker, the worker's own one-line message.

    PyTorch re-raises a worker's error as "Caught ... in DataLoader worker ...", its traceback, then "Type: message".
    """
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return str(error)


def get_args_parser(add_help=True, one_run=True):
    """The training flags; with `one_run`, also the flags naming the run (--dataset, --fold, --savedir).

    train.py builds its parser on this one (`parents=`), so a flag added here reaches both commands.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    if one_run:
        parser.add_argument("--dataset", required=True,
                            help="a task name (python3 train.py --help lists them) or synthetic-<task>")
        parser.add_argument("--fold", type=positive_int, default=1,
                            help="fold factor f (default 1: the original CNN); phi with --mode efficientnet")
        parser.add_argument("--savedir", required=True, help="run directory for checkpoints and stats")
    parser.add_argument("--mode", choices=("folded", "efficientnet"), default="folded",
                        help="folded (the FoldedCNN; fold 1 = the original CNN) or efficientnet (the compound-scaled "
                             "game baseline of the paper's comparison, fold = phi); default folded")
    parser.add_argument("--multiplier", type=float, default=None, help="internal multiplier (default sqrt(f))")
    parser.add_argument("--align", type=positive_int, default=1,
                        help="round every widened layer of a FoldedCNN (f > 1) up to a multiple of N, beyond the "
                             "paper (8 or 16 suit vector units and tensor cores); default 1: the paper's widths")
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: the paper's for the task")
    parser.add_argument("--batch_size", type=positive_int, default=32,
                        help="images per mini-batch, rounded down to a multiple of f (default 32); under "
                             "torchrun, the sum over the processes")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the paper's for the task); on resume it replaces the checkpoint's")
    parser.add_argument("--checkpoint_cycle", type=positive_int, default=1, help="save current.pth every N epochs")
    parser.add_argument("--continue_from_file", default=None, metavar="PATH",
                        help="resume from this checkpoint" + ("" if one_run else " (select one dataset and one fold)"))
    parser.add_argument("--recipe", choices=RECIPES, default="paper",
                        help="paper (default: the paper's protocol, exactly) or distill (folded runs learn the "
                             "trained original's logits: KL divergence at temperature 4 (slots balanced, game and "
                             "CIFAR), Adam at lr 1e-3, one-cycle "
                             "schedule (constant for NoScope), no curriculum; docs/protocol.md, section 8)")
    parser.add_argument("--teacher", default=None, metavar="PATH",
                        help="trained original model for distillation (folded runs of --recipe distill and of "
                             "CIFAR-10)")
    parser.add_argument("--distill_loss", choices=DISTILL_LOSSES, default=None,
                        help="folded runs: learn the teacher's logits with this loss instead of the recipe's")
    parser.add_argument("--temperature", type=float, default=None, help="folded runs: temperature of the kl losses")
    parser.add_argument("--curriculum", choices=("on", "off"), default=None,
                        help="folded runs: the paper's class curriculum on or off (default: the recipe's)")
    parser.add_argument("--slot_balance", choices=("on", "off"), default=None,
                        help="folded runs: weigh each slot's loss by its size, so a lagging slot learns faster "
                             "(default: the recipe's)")
    parser.add_argument("--optimizer", choices=("adam", "rmsprop"), default=None,
                        help="optimizer instead of the recipe's (weight decay stays the recipe's)")
    parser.add_argument("--lr_schedule", choices=SCHEDULES, default=None,
                        help="learning-rate schedule instead of the recipe's: constant, step (halve every 200 "
                             "epochs), onecycle or cosine (per batch)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="folder of CIFAR and NoScope data (default data/)")
    parser.add_argument("--data_root", default=None, help="folder of the game data (default $DATA_ROOT, then data_root/)")
    parser.add_argument("--download", action="store_true", help="download CIFAR with torchvision if missing")
    parser.add_argument("--val_size", type=positive_int, default=5000,
                        help="CIFAR validation images taken from the training set, plus f - val_size %% f as the "
                             "authors count (default 5000)")
    parser.add_argument("--stream_images", action="store_true",
                        help="read game/NoScope images from disk every epoch instead of holding them in memory")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader workers (default: 0 for images held in memory, else cores - 1, at most 4)")
    parser.add_argument("--amp", nargs="?", const="fp16", default=None, choices=tuple(AMP_DTYPES),
                        help="mixed precision: --amp (or --amp fp16) fp16 autocast with loss scaling, CUDA only; "
                             "--amp bf16 bf16 autocast, on CUDA or a CPU with bf16 instructions; default fp32 "
                             "as the paper")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the resolved protocol of each run as one JSON line and exit (reads no data)")
    parser.add_argument("--seed", type=int, default=19,
                        help="seed of the splits, the evaluation orders and training (default 19, the authors')")
    return parser


if __name__ == "__main__":
    parser = get_args_parser()
    args = parser.parse_args()
    try:
        if args.dry_run:
            print(json.dumps(resolved_protocol(args)))
            parser.exit(0)
        result = main(args)
    except (ValueError, DataMissing, FloatingPointError) as e:
        parser.exit(2, f"error: {error_message(e)}\n")
    if distributed.is_main():
        print(json.dumps(result))
    distributed.cleanup()
