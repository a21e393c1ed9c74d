"""The training loop in torchvision's shape: one epoch of training (`train_one_epoch`) and one pass of evaluation
(`evaluate`), each returning sums over the epoch's images that `averages` turns into losses, top-k and per-slot
accuracy."""
import copy

import torch
from tqdm import tqdm

from models.fold import whole_groups
from util.train import distributed
from util.train.protocol import training_loss

TOPK = (1, 2, 5, 10)
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def batch_step(model, batch, images_per_input, device, ks, protocol, amp=None, channels_last=False, loss=training_loss):
    """Forward one batch (cropped to a multiple of f): (loss, hits, images); None if under f images.

    hits: `top<k>` for each k, and for f > 1 `slot<j>`, the top-1 hits of the images at position j of their
    folded group (a model that starves one slot shows there). `amp` ("fp16" or "bf16"): forward under that
    autocast (mixed precision) instead of fp32. `channels_last`: the images in that memory format (the model's).
    `loss(logits, labels, targets, protocol, images_per_input)`: the loss (util.train.trainer.Hooks.loss)."""
    n = whole_groups(batch[0].shape[0], images_per_input)
    if n == 0:
        return None
    images, labels = batch[0][:n].to(device, non_blocking=True), batch[1][:n].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, AMP_DTYPES.get(amp, torch.float16), enabled=amp is not None):
        logits = model(images)
    teacher = batch[2][:n].to(device) if len(batch) > 2 else None
    value = loss(logits.float(), labels, teacher, protocol, images_per_input)
    ranked = logits.detach().topk(max(ks), dim=1).indices == labels[:, None]
    hits = {f"top{k}": ranked[:, :k].any(dim=1).sum().item() for k in ks}
    if images_per_input > 1:
        per_slot = ranked[:, 0].reshape(-1, images_per_input).sum(dim=0).tolist()
        hits.update({f"slot{j}": int(c) for j, c in enumerate(per_slot)})
    return value, hits, n


class Totals:
    """Sums over an epoch's images (sums, so that ranks can add theirs up): loss x images, top-k hits, images."""

    def __init__(self, ks, images_per_input=1):
        # the same keys on every rank
        slots = {f"slot{j}": 0 for j in range(images_per_input)} if images_per_input > 1 else {}
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


def train_one_epoch(model, loader, optimizer, scaler, images_per_input, device, num_classes, desc, protocol, amp=None,
                    set_lr=None, channels_last=False, transform=None, loss=training_loss):
    """One pass over `loader`, updating `model` (under `amp` autocast if given); returns the epoch's sums.

    `set_lr(fraction)`, if given, sets the learning rate before each batch (`fraction` of the epoch done);
    `channels_last`: feed the images in that memory format (for a model converted to it); `transform(fraction)`, if
    given, returns the batch transform to apply at that point (util.train.protocol.group_transform) or None; `loss` as
    in batch_step."""
    model.train()
    ks = [k for k in TOPK if k <= num_classes]
    totals = Totals(ks, images_per_input)
    bar = progress_bar(loader, desc)
    for i, batch in enumerate(bar):
        if set_lr:
            set_lr(i / len(loader))
        change = transform(i / len(loader)) if transform else None
        batch = change(batch) if change else batch
        step = batch_step(model, batch, images_per_input, device, ks, protocol, amp, channels_last, loss)
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


class WeightAverage:
    """An exponential moving average of a model's weights and buffers, `decay` per optimizer step, in a copy of the
    model that validation and test evaluate and best.pth keeps: it averages the noise of a short run's last steps
    away (Polyak averaging). Call `update()` after every step (setup_run hooks it to the optimizer)."""

    def __init__(self, model, decay):
        self.model, self.decay = copy.deepcopy(model).eval().requires_grad_(False), decay
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self.averaged = [(mine, live) for mine, live in pairs if mine.is_floating_point()]
        self.copied = [(mine, live) for mine, live in pairs if not mine.is_floating_point()]

    @torch.no_grad()
    def update(self, *_):
        for mine, live in self.averaged:
            mine.lerp_(live, 1 - self.decay)
        for mine, live in self.copied:
            mine.copy_(live)


@torch.no_grad()
def evaluate(model, loader, images_per_input, device, num_classes, desc, protocol, channels_last=False,
             loss=training_loss):
    """Loss (`loss`, the training loss of `protocol` by default) and top-k over `loader` without updating `model`;
    returns the sums (see Totals)."""
    model.eval()
    ks = [k for k in TOPK if k <= num_classes]
    totals = Totals(ks, images_per_input)
    bar = progress_bar(loader, desc)
    for batch in bar:
        step = batch_step(model, batch, images_per_input, device, ks, protocol, channels_last=channels_last, loss=loss)
        if step is None:
            continue
        check_finite(step[0], desc)
        totals.add(*step)
        bar.set_description(totals.describe(desc))
    return totals.sums


def averages(sums, images_per_input, desc):
    """Mean loss and top-k accuracy (per slot: over the images at that position) from train_one_epoch's or
    evaluate's sums."""
    images = int(sums["images"])
    if images == 0:
        raise ValueError(f"{desc}: no batch of at least {images_per_input} images; this split needs more images")
    groups = images // images_per_input
    return {**{k: v / (groups if k.startswith("slot") else images) for k, v in sums.items() if k != "images"},
            "images": images}


def slot_top1(metrics, images_per_input):
    """Top-1 accuracy per position in the folded group, [slot 0, ..., slot f-1] (None for f = 1)."""
    return [metrics[f"slot{j}"] for j in range(images_per_input)] if images_per_input > 1 else None
