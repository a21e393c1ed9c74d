"""How a run trains: the paper's protocol per task and fold (docs/protocol.md, section 3), the distill recipe
(section 8), the flags that change them, the losses, the learning-rate schedules and the optimizer."""
import dataclasses
import math

import torch
from torch.nn import functional as F

from config.tasks import USER

USER_EPOCHS = 30  # a user's task: the paper's 1500 game epochs are not a sensible default for an unknown task


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How the paper trains one (task, fold)."""

    epochs: int
    optimizer: str  # "rmsprop" or "adam"
    lr: float
    batch_size: int = 32  # images per mini-batch (the paper's 32, rounded down to a multiple of f when used)
    weight_decay: float = 0.0
    lr_step: int = 0  # halve the learning rate every lr_step epochs (schedule "step")
    schedule: str = "constant"  # of the learning rate: "constant", "step", "onecycle" or "cosine" (per batch)
    loss: str = "ce"  # "ce" (labels), or a distillation loss on the teacher's logits: "mse", "kl", "mse+ce", "kl+ce"
    temperature: float = 1.0  # of the "kl" losses
    curriculum: bool = False
    slow_curriculum: bool = False
    slot_balance: bool = False  # weigh each slot's loss by its size: a slot that lags behind learns faster
    repeat: float = 0.0  # slot curriculum: this share of folded groups carries one image in every slot at the start,
    # falling linearly to none halfway through training (repeat_groups)
    mixup: float = 0.0  # alpha of mixup between folded groups, teacher's logits mixed alike (0: off; mixup_groups)
    shift: int = 0  # augmentation: each training image moved by up to this many pixels each way (shift_images)
    ema: float = 0.0  # decay per step of an average of the weights that validation, test and best.pth use (0: off;
    # util.train.loop.WeightAverage)
    consistent: bool = False  # distillation targets computed by the teacher on the augmented view the student sees,
    # in the training step, instead of its cached logits of the un-augmented image
    init: str = "fresh"  # a folded student's start: "fresh" weights, "teacher" (models.warm_start: every slot
    # reads a copy of the trained original), "data" (models.init.centre_on_data: hidden layers centred on images), or
    # "separate" (models.warm_start.start_slots_apart: every slot its own block of channels, a fresh narrow copy)
    batchnorm: bool = False  # a folded student trains with BatchNorm after each conv with a bias, folded into the
    # conv when saved (models.batchnorm)

    @property
    def distill(self):
        """Whether the run learns from a teacher's logits."""
        return self.loss != "ce"


RECIPES = ("paper", "distill")
INITS = ("fresh", "teacher", "data", "separate")
DISTILL_LOSSES = ("mse", "kl", "mse+ce", "kl+ce")
SCHEDULES = ("constant", "step", "onecycle", "cosine")
ONECYCLE_WARMUP, ONECYCLE_START = 0.3, 1 / 25  # share of training spent warming up from 1/25 of the rate


def paper_protocol(task, fold):
    """The protocol of docs/protocol.md's table for `task` at fold `fold`; a user's task (train.py --model_file)
    trains as the game family, for USER_EPOCHS epochs."""
    if task.family == "noscope":
        return Protocol(epochs=50, optimizer="rmsprop", lr=0.001 / 1.5)
    if task.family in ("game", USER):
        slow = fold in task.slow_curriculum_folds
        epochs = USER_EPOCHS if task.family == USER else 3000 if slow else 1500
        return Protocol(epochs=epochs, optimizer="adam", lr=1e-4, weight_decay=1e-5,
                        curriculum=fold > 1, slow_curriculum=slow)
    distill = task.distill_folded and fold > 1
    # The authors' StepLR(200, 0.5) applies to runs trained on CIFAR itself, not to distilled ones (folded
    # CIFAR-10), which keep 1e-4 for all 1500 epochs.
    return Protocol(epochs=1500, optimizer="adam", lr=1e-4, weight_decay=1e-5, lr_step=0 if distill else 200,
                    schedule="constant" if distill else "step", loss="mse" if distill else "ce")


# The distill recipe's settings for folded runs, per family, chosen by results/accuracy/choices.md (CIFAR's
# were not measured: they are the game tasks' but for the start).
# "inputs_per_batch": a student's mini-batch holds that many folded inputs (f times as many images), at the rate lr
# times sqrt(f); None: the paper's 32 images at lr.
_ONECYCLE = {"loss": "kl+ce", "temperature": 4.0, "optimizer": "adam", "lr": 1e-3, "schedule": "onecycle",
             "curriculum": False, "slot_balance": True, "shift": 0, "inputs_per_batch": 32,
             "init": "fresh", "ema": 0.99, "batchnorm": True, "student_seconds": 1.8}
# "init": the game students and a user's start with their slots apart ("separate": every slot its own block of
# channels, a fresh narrow copy of the original, nothing crossing between slots; models.warm_start): on real images
# this took the game CNN's f=4 students from 13.3 (photos) and 4.8 points (the hold-out) behind their originals to
# 7.2 and 0.4, three seeds (choices.md, round 18), where the teacher's copies (round 12: two at f=4, each reading
# the mean of two slots' images) had gained on the stand-ins only.
# CIFAR's ResNet starts fresh (not measured); NoScope's students centred on their data (round 8).
# "student_epochs": a folded student's epochs as a multiple of its original's (train.py --epochs): 3x for the game
# family (a student at f=4 trains 1.5-2.5x faster per epoch, so 3x stays near twice the original's seconds), 1.2x for
# NoScope, whose students' epochs are slower than the original's on some CPUs (results/accuracy/choices.md, rounds
# 10-13). A multiple, not a count of images, so that the seconds' ratio holds on a split of any size.
# "student_seconds": and at most the epochs that fit in that multiple of the original's training seconds, timed on
# the machine when the student starts (util.train.budget): a student's epoch costs 0.5x its original's at f=4 but
# 0.85-1.05x at f=2 and f=3 (round 15), and more again on a CPU without bf16, so no one multiple of epochs holds
# the target's 2x bound everywhere; 1.8 leaves room for the machine's 10-15% drift (round 16).
# "batchnorm": the students of plain ReLU CNNs (game, a user's) train with a BatchNorm after each conv, folded into
# it when saved (models.batchnorm): on real images their students otherwise stall (choices.md, round 15). NoScope's
# were not measured with it; CIFAR's ResNet has BatchNorm already (its convs have no bias: nothing is added).
DISTILL = {"game": {**_ONECYCLE, "init": "separate", "student_epochs": 3.0},
           "cifar": {**_ONECYCLE, "student_epochs": 3.0}, USER: {**_ONECYCLE, "init": "separate", "student_epochs": 3.0},
           "noscope": {**_ONECYCLE, "loss": "kl", "schedule": "constant", "slot_balance": False, "shift": 12,
                       "inputs_per_batch": None, "init": "data", "ema": 0.0, "batchnorm": False, "student_epochs": 1.2}}


def student_epochs(task, original_epochs=None):
    """The epochs of `task`'s folded students under the distill recipe: its family's multiple of the original's
    (f=1) epochs, by default the paper protocol's (docs/protocol.md, section 8)."""
    epochs = original_epochs or paper_protocol(task, 1).epochs
    return max(1, math.ceil(DISTILL[task.family]["student_epochs"] * epochs - 1e-9))


def distill_protocol(task, fold):
    """The distill recipe (docs/protocol.md, section 8): a folded student learns the trained original's
    (f=1) logits with its family's DISTILL settings; the original itself trains as the paper's."""
    paper = paper_protocol(task, fold)
    if fold == 1:
        return paper
    recipe = DISTILL[task.family]
    inputs = recipe["inputs_per_batch"]
    return Protocol(epochs=paper.epochs, optimizer=recipe["optimizer"],
                    lr=recipe["lr"] * math.sqrt(fold) if inputs else recipe["lr"],
                    batch_size=inputs * fold if inputs else paper.batch_size, weight_decay=paper.weight_decay, schedule=recipe["schedule"], loss=recipe["loss"],
                    temperature=recipe["temperature"], curriculum=recipe["curriculum"],
                    slow_curriculum=paper.slow_curriculum, slot_balance=recipe["slot_balance"], shift=recipe["shift"],
                    init=recipe["init"], ema=recipe["ema"], batchnorm=recipe["batchnorm"])


def with_overrides(protocol, overrides, group):
    """`protocol` with the changes the user asked for (`overrides`: optimizer, lr, weight_decay, lr_schedule for every
    run; distill_loss, temperature, curriculum, slot_balance, consistent and batchnorm "on"/"off", repeat, mixup, shift,
    init, ema for folded runs only: the original stays a teacher trained on labels)."""
    changes = {"lr": overrides["lr"]} if overrides.get("lr") else {}
    if overrides.get("weight_decay") is not None:
        changes["weight_decay"] = overrides["weight_decay"]
    if overrides.get("optimizer"):
        changes["optimizer"] = overrides["optimizer"]
    if overrides.get("lr_schedule"):
        if overrides["lr_schedule"] == "step" and not protocol.lr_step:
            changes["lr_step"] = 200
        changes["schedule"] = overrides["lr_schedule"]
    if group > 1:
        if overrides.get("distill_loss"):
            changes["loss"] = overrides["distill_loss"]
        if overrides.get("temperature"):
            changes["temperature"] = overrides["temperature"]
        if overrides.get("curriculum"):
            changes["curriculum"] = overrides["curriculum"] == "on"
        if overrides.get("slot_balance"):
            changes["slot_balance"] = overrides["slot_balance"] == "on"
        for name in ("consistent", "batchnorm"):
            if overrides.get(name):
                changes[name] = overrides[name] == "on"
        for name in ("repeat", "mixup", "shift", "init", "ema"):
            if overrides.get(name) is not None:
                changes[name] = overrides[name]
    return dataclasses.replace(protocol, **changes)


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


def training_loss(logits, labels, teacher, protocol, images_per_input=1):
    """The loss of `protocol` for fp32 `logits` (one row per image, folded groups of `images_per_input` consecutive
    rows): cross-entropy to `labels`, or a distillation loss to the teacher's logits: "mse" regresses them (the paper's
    CIFAR-10 students), "kl" matches the softened distributions (KL divergence at the temperature, times its
    square), "+ce" averages either with cross-entropy. With `slot_balance`, the mean of each slot's loss (position
    j of every group) is weighted by its share (detached, mean weight 1), so a lagging slot gets more gradient."""
    balance = protocol.slot_balance and images_per_input > 1
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
    slots = loss.reshape(-1, images_per_input).mean(dim=0)
    weights = (slots / slots.mean().clamp_min(1e-12)).detach()
    return (weights * slots).mean()


def repeat_groups(batch, images_per_input, share):
    """The slot curriculum (MIMO's input repetition): each folded group of `batch` (images, labels[, teacher
    logits]; groups of `images_per_input` consecutive rows) is, with probability `share`, replaced by one of its
    images (chosen at random) in every slot, so that every slot learns the task before it learns to keep its image apart."""
    groups = batch[0].shape[0] // images_per_input
    if share <= 0 or groups == 0:
        return batch
    rows = torch.arange(groups * images_per_input).reshape(groups, images_per_input)
    chosen = rows[torch.arange(groups), torch.randint(images_per_input, (groups,))]
    repeated = chosen[:, None].expand(-1, images_per_input)
    index = torch.where((torch.rand(groups) < share)[:, None], repeated, rows).reshape(-1)
    return tuple(part[index] for part in batch)


def mixup_groups(batch, images_per_input, alpha):
    """Mixup between folded groups: every image becomes lam * itself + (1 - lam) * the image in the same slot of
    another group (lam ~ Beta(alpha, alpha), one per batch), and the teacher's logits are mixed alike; the labels
    (for the top-1 counts) stay the first image's."""
    groups = batch[0].shape[0] // images_per_input
    if alpha <= 0 or groups < 2:
        return batch
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    index = (torch.randperm(groups)[:, None] * images_per_input + torch.arange(images_per_input)).reshape(-1)
    images, labels, *teacher = (part[:groups * images_per_input] for part in batch)
    mixed = (lam * images + (1 - lam) * images[index], labels)
    return mixed + tuple(lam * t + (1 - lam) * t[index] for t in teacher)


def shift_images(batch, pixels):
    """Each image of `batch` moved by a random offset of up to `pixels` each way, the edge pixels repeated into the
    gap (a label-preserving augmentation: the teacher's logits of the unmoved image stay its targets)."""
    if pixels <= 0:
        return batch
    images, *rest = batch
    n, _, h, w = images.shape
    padded = F.pad(images, (pixels,) * 4, mode="replicate")
    dy, dx = torch.randint(2 * pixels + 1, (2, n)).tolist()
    moved = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    return (moved, *rest)


def group_transform(protocol, images_per_input, progress):
    """The training batches' transform at `progress` (0 to 1) of training, `batch -> batch`: the protocol's slot
    curriculum, shift and mixup (None when it has none, or for f = 1)."""
    share = protocol.repeat * max(0.0, 1 - 2 * progress)
    if images_per_input == 1 or (share <= 0 and protocol.mixup <= 0 and protocol.shift <= 0):
        return None
    return lambda batch: mixup_groups(shift_images(repeat_groups(batch, images_per_input, share), protocol.shift),
                                      images_per_input, protocol.mixup)


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


LOSS_NAMES = {"ce": "cross-entropy", "mse": "mse to the teacher's logits",
              "kl": "kl to the teacher's softened outputs", "mse+ce": "mean of mse to the teacher's logits and "
              "cross-entropy", "kl+ce": "mean of kl to the teacher's softened outputs and cross-entropy"}
