"""Train one FoldedCNN (dataset, fold) with the paper's protocol (SPEC section 3).

Every epoch trains, then validates and tests. It writes, in --savedir: one stats file per split and
metric (`stats/<split>_<metric>.txt`, one line per epoch), `current.pth` every --checkpoint_cycle
epochs, `best.pth` on a better validation top-1, and `result.json` when the run is finished.
A run continues from a checkpoint with --continue_from_file.

Under `torchrun --nproc_per_node N fold_trainer.py ...` it trains with DistributedDataParallel: each
rank trains on its own 1/N of every epoch's images, in batches of --batch_size / N (a multiple of
f); training metrics are summed over the ranks; rank 0 alone validates, tests and writes files.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from config.tasks import SPLITS, resolve_dataset
from datasets import (DATA_DIR, CurriculumDataset, DataMissing, DistillationDataset, curriculum_schedule,
                      load_splits)
from models import build_classifier
from models.fold import check_fold, check_multiplier
from util import distributed
from util.common import (positive_int, read_torch_file, save_atomic, seed_everything, write_json_atomic,
                         write_text_atomic)

TOPK = (1, 2, 5, 10)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How the paper trains one (task, fold)."""

    epochs: int
    optimizer: str  # "rmsprop" or "adam"
    lr: float
    weight_decay: float = 0.0
    lr_step: int = 0  # halve the learning rate every lr_step epochs (0: never)
    distill: bool = False  # MSE to the original model's logits instead of cross-entropy
    curriculum: bool = False
    slow_curriculum: bool = False


def paper_protocol(task, fold):
    """The protocol of SPEC section 3's table for `task` at fold `fold`."""
    if task.family == "noscope":
        return Protocol(epochs=50, optimizer="rmsprop", lr=0.001 / 1.5)
    if task.family == "game":
        slow = fold in task.slow_curriculum_folds
        return Protocol(epochs=3000 if slow else 1500, optimizer="adam", lr=1e-4, weight_decay=1e-5,
                        curriculum=fold > 1, slow_curriculum=slow)
    return Protocol(epochs=1500, optimizer="adam", lr=1e-4, weight_decay=1e-5, lr_step=200,
                    distill=task.distill_folded and fold > 1)


def make_optimizer(model, protocol):
    if protocol.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)


def set_learning_rate(optimizer, scheduler, lr):
    """A resumed run with a new --lr: `lr` replaces the base rate; the schedule's decay so far is kept."""
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        group["lr"] = lr * group["lr"] / base
        if "initial_lr" in group:
            group["initial_lr"] = lr
    if scheduler:
        scheduler.base_lrs = [lr] * len(optimizer.param_groups)


def load_weights(path, task, device):
    """The original (f=1) model of `task` with the weights of `path` (a checkpoint or a state dict)."""
    state = read_torch_file(path, "teacher", "pass a model.pth or best.pth with --teacher", device)
    if isinstance(state, dict) and "model" in state:
        if state.get("fold", 1) != 1:
            raise ValueError(f"teacher {path} is a fold-{state['fold']} model; the teacher must be the original (fold 1)")
        state = state["model"]
    classifier = build_classifier(task, 1).to(device)
    try:
        classifier.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"teacher {path} does not fit {task.name}'s original model: {str(e).splitlines()[-1].strip()}") from None
    return classifier.eval()


@torch.no_grad()
def teacher_logits(teacher, data, device, cache):
    """The teacher's logits for every sample of `data` (un-augmented), computed once into `cache`."""
    if cache.exists():
        return torch.load(cache, weights_only=True)
    loader = DataLoader(data, batch_size=256, shuffle=False)
    logits = torch.cat([teacher(images.to(device)).float().cpu() for images, _ in loader])
    save_atomic(logits, cache)
    return logits


def distillation_targets(args, task, fold, device, savedir):
    """The teacher's logits for each split (cached in `savedir`): the regression targets of distillation."""
    teacher = load_weights(args.teacher, task, device)
    plain = load_splits(args.dataset, fold, args.data_dir, args.data_root, args.seed, augment=False,
                        val_size=args.val_size)
    return {s: teacher_logits(teacher, plain[s], device, savedir / f"teacher_logits_{s}.pt") for s in SPLITS}


def run_epoch(model, loader, fold, device, num_classes, optimizer=None, scaler=None, desc=""):
    """Train (when `optimizer` is given) or evaluate over `loader`; returns sums over the images seen:
    loss x images, top-k hits and images (sums, so that ranks can add theirs up; see `averages`).

    Batches are cropped to a multiple of f; a batch smaller than f is skipped.
    """
    training = optimizer is not None
    model.train(training)
    ks = [k for k in TOPK if k <= num_classes]
    totals = {"loss": 0.0, **{f"top{k}": 0 for k in ks}}
    seen = 0
    use_amp = device.type == "cuda"
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
               disable=None if distributed.is_main() else True)  # bars on rank 0's terminal only
    for batch in bar:
        n = (batch[0].shape[0] // fold) * fold
        if n == 0:
            continue
        images, labels = batch[0][:n].to(device, non_blocking=True), batch[1][:n].to(device, non_blocking=True)
        with torch.set_grad_enabled(training), torch.autocast(device.type, torch.float16, enabled=use_amp):
            logits = model(images)
        if len(batch) > 2:
            loss = F.mse_loss(logits.float(), batch[2][:n].to(device))
        else:
            loss = F.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()}; lower the learning rate or check the data")
        if training:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        ranked = logits.detach().topk(max(ks), dim=1).indices
        hits = ranked == labels[:, None]
        seen += n
        totals["loss"] += loss.item() * n
        for k in ks:
            totals[f"top{k}"] += hits[:, :k].any(dim=1).sum().item()
        shown = [f"Top-{k}={totals[f'top{k}'] / seen:.4f}" for k in (1, 5) if k in ks]
        bar.set_description(f"{desc}. {', '.join(shown)}, Loss={totals['loss'] / seen:.4f}")
    return {**totals, "images": seen}


def averages(sums, fold, desc):
    """Mean loss and top-k accuracy from run_epoch's sums."""
    images = int(sums["images"])
    if images == 0:
        raise ValueError(f"{desc}: no batch of at least {fold} images; this split needs more images")
    return {**{k: v / images for k, v in sums.items() if k != "images"}, "images": images}


def rng_state():
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def append_stats(stats_dir, epoch, metrics):
    """Write epoch `epoch`'s line of each stats file (rewriting from that line on, so a resume never duplicates)."""
    for split, values in metrics.items():
        for name, value in values.items():
            if name == "images":
                continue
            path = stats_dir / f"{split}_{name}.txt"
            lines = path.read_text().splitlines()[:epoch] if path.exists() else []
            write_text_atomic(path, "".join(f"{line}\n" for line in lines + [f"{value:.6f}"]))


def load_checkpoint(path, device, dataset, fold, multiplier):
    """The training checkpoint at `path`; a ValueError unless it is one of this dataset, fold and multiplier."""
    fix = "pass a current.pth or best.pth written by fold_trainer.py"
    state = read_torch_file(path, "checkpoint", fix, device)
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "best", "rng"} <= state.keys():
        raise ValueError(f"{path} is not a training checkpoint; {fix}")
    found = (state.get("dataset"), state.get("fold"), state.get("multiplier"))
    if found != (dataset, fold, multiplier):
        raise ValueError(f"checkpoint {path} is for dataset {found[0]}, fold {found[1]}, multiplier {found[2]}, "
                         f"not {dataset}, fold {fold}, multiplier {multiplier}: pass that run's checkpoint")
    return state


def per_rank_batch(batch_size, fold, world):
    """Each of `world` processes' share of --batch_size, rounded down to a multiple of f; a ValueError if none."""
    share = (batch_size // world // fold) * fold
    if share < fold:
        processes = f" x {world} processes" if world > 1 else ""
        raise ValueError(f"--batch_size {batch_size} is smaller than the fold {fold}{processes}: "
                         f"use at least {fold * world}")
    return share


def prepare_savedir(savedir):
    """Create savedir/stats and remove the temporary files of a killed run's unfinished writes."""
    stats_dir = savedir / "stats"
    try:
        stats_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write to {savedir}: {e.strerror}; choose a writable savedir") from None
    for stale in [*savedir.glob(".*.tmp"), *stats_dir.glob(".*.tmp")]:
        stale.unlink()


def run(args):
    """Train one (dataset, fold) as `args` says; returns the result dict also written to result.json."""
    task, _ = resolve_dataset(args.dataset)
    fold = check_fold(args.fold)
    multiplier = check_multiplier(args.multiplier, fold)
    protocol = paper_protocol(task, fold)
    if args.lr:
        protocol = dataclasses.replace(protocol, lr=args.lr)
    epochs = args.epochs or protocol.epochs
    rank, world, device = distributed.setup(args.device)
    batch_size = per_rank_batch(args.batch_size, fold, world)
    state = None  # checked before anything is written or loaded
    if args.continue_from_file:
        state = load_checkpoint(args.continue_from_file, device, args.dataset, fold, multiplier)
    savedir = Path(args.savedir)
    if not state and (savedir / "current.pth").exists():
        raise ValueError(f"{savedir} already holds a run: resume it with --continue_from_file "
                         f"{savedir / 'current.pth'}, or choose another --savedir")
    distributed.on_main(prepare_savedir, savedir)
    seed_everything(args.seed)

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

    model = build_classifier(task, fold, multiplier).to(device)
    optimizer = make_optimizer(model, protocol)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, protocol.lr_step, 0.5) if protocol.lr_step else None
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    best = {"val_top1": -1.0, "epoch": None, "test_top1": None, "classes": 0}
    start_epoch, train_images, train_seconds = 0, 0, 0.0

    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if scheduler:
            scheduler.load_state_dict(state["scheduler"])
        if args.lr:
            set_learning_rate(optimizer, scheduler, args.lr)
        if protocol.curriculum:
            for s in SPLITS:
                splits[s].load_state_dict(state["curriculum"])
        best, start_epoch = state["best"], state["epoch"]
        train_images, train_seconds = state["train_images"], state["train_seconds"]
        set_rng_state(state["rng"])
    train_model = model
    if world > 1:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    in_memory = task.family != "cifar" and not args.stream_images
    workers = args.workers if args.workers is not None else 0 if in_memory else min(4, (os.cpu_count() or 1) - 1)
    generator = torch.Generator()
    sampler = distributed.ShardSampler(splits["train"], rank, world, seed=args.seed) if world > 1 else None
    loading = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    loaders = {"train": DataLoader(splits["train"], batch_size, shuffle=sampler is None, sampler=sampler,
                                   generator=generator, **loading)}
    for s in ("val", "test"):  # rank 0 evaluates alone, with the whole batch
        loaders[s] = DataLoader(splits[s], (args.batch_size // fold) * fold, shuffle=False, **loading)

    def checkpoint(epoch, best):
        return {"dataset": args.dataset, "task": task.name, "fold": fold, "multiplier": multiplier, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler else None,
                "curriculum": splits["train"].state_dict() if protocol.curriculum else None,
                "best": best, "train_images": train_images, "train_seconds": train_seconds, "rng": rng_state()}

    def end_epoch(epoch, train_metrics, classes, best):
        """Rank 0's part of an epoch: validate, test, write stats and checkpoints; returns the new best."""
        metrics = {"train": train_metrics}
        for s in ("val", "test"):
            with torch.no_grad():
                sums = run_epoch(model, loaders[s], fold, device, task.num_classes, desc=f"Epoch {epoch}. {s}")
            metrics[s] = averages(sums, fold, f"Epoch {epoch}. {s}")
        append_stats(savedir / "stats", epoch, metrics)
        if classes > best["classes"]:  # a curriculum step makes validation harder: compare like with like
            best = {"val_top1": -1.0, "epoch": None, "test_top1": None, "classes": classes}
        improved = metrics["val"]["top1"] > best["val_top1"]
        if improved:
            best = {**best, "val_top1": metrics["val"]["top1"], "epoch": epoch, "test_top1": metrics["test"]["top1"]}
        print(f"{args.dataset} fold {fold} epoch {epoch + 1}/{epochs}: train loss {metrics['train']['loss']:.4f} "
              f"top-1 {metrics['train']['top1']:.4f} | val top-1 {metrics['val']['top1']:.4f} | "
              f"test top-1 {metrics['test']['top1']:.4f}" + (f" | {classes}/{task.num_classes} classes"
                                                              if protocol.curriculum else ""), flush=True)
        if improved:
            save_atomic(checkpoint(epoch + 1, best), savedir / "best.pth")
        if (epoch + 1) % args.checkpoint_cycle == 0 or epoch + 1 == epochs:
            save_atomic(checkpoint(epoch + 1, best), savedir / "current.pth")
        return best

    for epoch in range(start_epoch, epochs):
        classes = task.num_classes
        if protocol.curriculum:
            classes = [splits[s].set_epoch(epoch) for s in SPLITS][0]
        generator.manual_seed(args.seed + epoch)
        if sampler:
            sampler.set_epoch(epoch)
            seed_everything(args.seed + epoch * world + rank)  # each rank its own augmentation, the same on resume
        tic = time.perf_counter()
        with train_model.join() if world > 1 else contextlib.nullcontext():  # ranks may have a batch more or less
            sums = run_epoch(train_model, loaders["train"], fold, device, task.num_classes, optimizer, scaler,
                             desc=f"Epoch {epoch}. train")
        train_metrics = averages(dict(zip(sums, distributed.all_sum(list(sums.values()), device))), fold,
                                 f"Epoch {epoch}. train")
        train_seconds += time.perf_counter() - tic
        train_images += train_metrics["images"]
        if scheduler:
            scheduler.step()
        best = distributed.on_main(end_epoch, epoch, train_metrics, classes, best)

    def finish():
        result = {"dataset": args.dataset, "fold": fold, "multiplier": round(multiplier, 6), "epochs": epochs,
                  "best_epoch": best["epoch"], "best_val_top1": best["val_top1"], "test_top1": best["test_top1"],
                  "train_images_per_sec": train_images / train_seconds if train_seconds else 0.0}
        write_json_atomic(savedir / "result.json", result)
        return result
    return distributed.on_main(finish)


def error_message(error):
    """`error`'s message; for one raised in a data-loader worker, the worker's own one-line message.

    PyTorch re-raises a worker's error as "Caught ... in DataLoader worker ...", its traceback, then "Type: message".
    """
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return str(error)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="a task name (python3 train.py --help lists them) or synthetic-<task>")
    parser.add_argument("--fold", type=positive_int, default=1, help="fold factor f (default 1: the original CNN)")
    parser.add_argument("--multiplier", type=float, default=None, help="internal multiplier (default sqrt(f))")
    parser.add_argument("--savedir", required=True, help="run directory for checkpoints and stats")
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: the paper's for the task")
    parser.add_argument("--batch_size", type=positive_int, default=32,
                        help="images per mini-batch, rounded down to a multiple of f (default 32); under "
                             "torchrun, the sum over the processes")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the paper's for the task); on resume it replaces the checkpoint's")
    parser.add_argument("--checkpoint_cycle", type=positive_int, default=1, help="save current.pth every N epochs")
    parser.add_argument("--continue_from_file", default=None, metavar="PATH", help="resume from this checkpoint")
    parser.add_argument("--teacher", default=None, metavar="PATH",
                        help="trained original model for distillation (CIFAR-10 folded runs)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="folder of CIFAR and NoScope data (default data/)")
    parser.add_argument("--data_root", default=None, help="folder of the game data (default $DATA_ROOT, then data_root/)")
    parser.add_argument("--download", action="store_true", help="download CIFAR with torchvision if missing")
    parser.add_argument("--val_size", type=positive_int, default=5000,
                        help="CIFAR validation images taken from the training set (default 5000)")
    parser.add_argument("--stream_images", action="store_true",
                        help="read game/NoScope images from disk every epoch instead of holding them in memory")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader workers (default: 0 for images held in memory, else cores - 1, at most 4)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (ValueError, DataMissing, FloatingPointError) as e:
        parser.exit(2, f"error: {error_message(e)}\n")
    if distributed.is_main():
        print(json.dumps(result))
    distributed.cleanup()


if __name__ == "__main__":
    main()
