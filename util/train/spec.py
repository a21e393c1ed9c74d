"""A run is one value: `RunSpec` holds everything that identifies one training run (what it trains, with which
protocol, where it writes). It is built once from the arguments (`build_spec`), written as `run.json` in the run
directory when the run starts, printed by --dry_run, and compared with a checkpoint's in one place
(`check_resume`) when a run resumes."""
import dataclasses
from pathlib import Path

from config.tasks import USER, all_tasks, resolve_dataset
from datasets import curriculum_schedule
from models import mode_of
from models.fold import check_align, check_fold, check_multiplier, whole_groups
from models.user import user_classifier
from util.train.protocol import LOSS_NAMES, Protocol, distill_protocol, paper_protocol, with_overrides

# The flags that change a protocol (util.train.protocol.with_overrides), as the user gave them.
OVERRIDES = ("optimizer", "lr", "weight_decay", "lr_schedule", "distill_loss", "temperature", "curriculum",
             "slot_balance", "repeat", "mixup", "shift", "init", "ema", "consistent", "batchnorm")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: dataset and model (mode, fold, widths), recipe and resolved protocol, budget, seed, files."""

    dataset: str  # a task name, or synthetic-<task>, or a user task's name
    fold: int  # f; phi for the compound-scaled baseline (mode "efficientnet")
    mode: str  # what the model is (models.MODES): "original" (fold 1), "folded" or "efficientnet"
    multiplier: float | None  # internal multiplier of a FoldedCNN; None for the baseline
    align: int  # widened layers rounded up to a multiple of it (1: the paper's widths)
    recipe: str  # "paper" or "distill"; "paper" for the original, which both recipes share
    protocol: Protocol
    epochs: int
    batch_size: int  # images per mini-batch: --batch_size, else the protocol's (rounded down to a multiple of
    # images_per_input when used)
    seed: int
    savedir: str  # the run directory
    teacher: str | None = None  # the trained original, for a run that distils
    amp: str | None = None  # "fp16" or "bf16" autocast; None: fp32, as the paper
    precision_choice: str = "the paper's"  # how amp was chosen: given (--amp), the paper's (fp32), or auto
    epochs_choice: str = "given"  # how epochs were chosen: given (--epochs), the protocol's, or the distill recipe's
    # student budget (a multiple of the original's: util.train.protocol.student_epochs)
    seconds_bound: float = 0.0  # a student of the recipe's budget trains at most the epochs that fit in this multiple
    # of its original's training seconds, timed when it starts (util.train.budget); 0: epochs as they are
    val_size: int = 5000  # CIFAR validation images taken from the training set
    overrides: tuple = ()  # (flag, value) pairs the user set that change the protocol
    weights: str | None = None  # a user's trained original (a plain state dict): f=1 is evaluated, not trained
    task: object = None  # the dataset's Task, resolved once by build_spec: a registry task, or a user's own CNN and data

    @property
    def user_task(self):
        """The user's own task (config.tasks.user_task), None for a registry task."""
        return self.task if self.task is not None and self.task.family == USER else None

    @property
    def precision(self):
        """"fp32" or "amp bf16" / "amp fp16": what run.json, result.json and resume checks call the precision."""
        return f"amp {self.amp}" if self.amp else "fp32"

    @property
    def data_source(self):
        """What datasets.load_splits reads: the dataset's name, or a user's task (its --data folder)."""
        return self.user_task or self.dataset

    @property
    def images_per_input(self):
        """Images in one model input: f for a FoldedCNN, 1 for the compound-scaled baseline."""
        return 1 if self.mode == "efficientnet" else self.fold

    @property
    def fold_name(self):
        """What the fold number means in messages: phi for the compound-scaled baseline, else the fold."""
        return "phi" if self.mode == "efficientnet" else "fold"

    @property
    def name(self):
        """The run in messages: "<dataset> fold <f>" (phi for the baseline)."""
        return f"{self.dataset} {self.fold_name} {self.fold}"

    @property
    def eval_batch_size(self):
        """--batch_size rounded down to a multiple of the images per input."""
        return whole_groups(self.batch_size, self.images_per_input)

    def overridden(self, name):
        """The value the user gave for protocol flag `name`, or None."""
        return dict(self.overrides).get(name)

    def describe(self):
        """The run as a JSON-able dict: what --dry_run prints and run.json holds."""
        p = self.protocol
        curriculum = None
        if p.curriculum:
            start, step, gap = curriculum_schedule(self.task.num_classes, self.images_per_input, self.epochs, p.epochs,
                                                   p.slow_curriculum)
            curriculum = {"start": start, "step": step, "gap": gap}
        schedules = {"step": f"StepLR(step_size={p.lr_step}, gamma=0.5)", "onecycle": "one-cycle (per batch)",
                     "cosine": "cosine (per batch)"}
        return {"dataset": self.dataset, "fold": self.fold, "mode": self.mode, "recipe": self.recipe,
                "multiplier": None if self.multiplier is None else round(self.multiplier, 6), "align": self.align,
                "images_per_input": self.images_per_input, "epochs": self.epochs, "optimizer": p.optimizer,
                "lr": p.lr, "weight_decay": p.weight_decay,
                "lr_schedule": schedules.get(p.schedule, p.schedule), "loss": LOSS_NAMES[p.loss],
                "temperature": p.temperature if p.loss.startswith("kl") else None, "slot_balance": p.slot_balance,
                "repeat": p.repeat or None, "mixup": p.mixup or None, "shift": p.shift or None,
                "consistent": p.consistent if p.distill else None,
                "init": p.init if self.images_per_input > 1 else None,
                "batchnorm": p.batchnorm if self.images_per_input > 1 else None, "ema": p.ema or None,
                "curriculum": curriculum, "precision": self.precision, "precision_choice": self.precision_choice,
                "epochs_choice": self.epochs_choice, "seconds_bound": self.seconds_bound or None, "seed": self.seed,
                "batch_size": self.eval_batch_size, "val_size": self.val_size, "teacher": self.teacher,
                "overrides": dict(self.overrides), "savedir": self.savedir, **self.describe_user_task()}

    def describe_user_task(self):
        """A user task's model, data and weights, for describe(); nothing for a registry task."""
        task = self.user_task
        if task is None:
            return {}
        return {"model_file": task.model_file, "data": task.data, "input_shape": list(task.input_shape),
                "class_names": list(task.class_names), "weights": self.weights, "teacher": self.teacher}


def build_spec(dataset, fold=1, savedir=".", *, mode="folded", multiplier=None, align=1, recipe="paper", epochs=None,
               batch_size=None, seed=19, teacher=None, amp=None, val_size=5000, overrides=None, weights=None,
               fast_amp=(None, ""), epochs_choice=None, seconds_bound=0.0):
    """The RunSpec of one run, with every setting checked (a one-line ValueError naming the fix otherwise).

    `mode`: --mode, "folded" (whose f=1 is the original) or "efficientnet"; the spec holds models.mode_of's name.
    `overrides`: {flag: value} of the protocol flags in OVERRIDES (None values are ignored). The compound-scaled
    baseline (mode "efficientnet", fold = phi, a game task) trains with the original game CNN's protocol, one image
    per input and no multiplier; the original (f=1) trains as the paper's under either recipe. `dataset` may be a
    user's task (config.tasks.user_task): its folded models are checked to fold (models.fold_cnn), and with
    `weights` (its trained original) the f=1 run evaluates them instead of training (0 epochs)."""
    task, _ = resolve_dataset(dataset)
    fold = check_fold(fold)
    user = task.family == USER
    if weights and not user:
        raise ValueError("--weights is a trained original of --model_file: for a registry task pass --teacher")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if mode == "efficientnet":
        if task.family != "game":
            baselines = " ".join(n for n, t in all_tasks().items() if t.compound_scaling_baseline)
            raise ValueError(f"--mode efficientnet trains the compound-scaled game CNN; {task.name} is a "
                             f"{task.family} task: choose game tasks (--datasets {baselines})")
        if recipe != "paper":
            raise ValueError("--mode efficientnet trains the original game CNN's protocol: drop --recipe distill")
        if multiplier is not None or align != 1:
            raise ValueError("--mode efficientnet scales by phi (the fold): drop --multiplier and --align")
        group, protocol = 1, paper_protocol(task, 1)
    else:
        group = fold
        multiplier = check_multiplier(multiplier, fold)
        protocol = distill_protocol(task, fold) if recipe == "distill" else paper_protocol(task, fold)
        align = check_align(align) if fold > 1 else 1  # f=1 is the original, at its own widths
        if user and fold > 1:
            user_classifier(task.model_file, task.input_shape, fold, multiplier, align)  # a ValueError naming the layer
    protocol = with_overrides(protocol, overrides, group)
    if protocol.init == "teacher" and not protocol.distill:
        raise ValueError("--init teacher starts a folded student from its teacher: use it with --recipe distill")
    if amp:  # --amp as given; "fp32" asks for none
        amp, precision_choice = (None if amp == "fp32" else amp), "given"
    elif recipe == "distill" and group > 1:  # a distilled student: the device's fast step (util.train.trainer.fast_amp)
        amp, precision_choice = fast_amp
    else:
        precision_choice = "the paper's"
    if user and weights and fold == 1:
        epochs, epochs_choice = 0, "evaluated, not trained (--weights)"
    elif epochs is None:
        epochs, epochs_choice = protocol.epochs, "the protocol's"
    if user:  # absolute, so that a rerun from elsewhere recognises its runs (check_same_model)
        teacher, weights = (str(Path(p).resolve()) if p else None for p in (teacher, weights))
    return RunSpec(dataset=task.name if user else dataset, fold=fold, mode=mode_of(fold, mode), multiplier=multiplier, align=align,
                   recipe=recipe if group > 1 else "paper", protocol=protocol, epochs=epochs,
                   batch_size=batch_size or protocol.batch_size, seed=seed, savedir=str(savedir),
                   teacher=str(teacher) if teacher and protocol.distill else None, amp=amp, precision_choice=precision_choice,
                   epochs_choice=epochs_choice or "given", seconds_bound=seconds_bound if protocol.distill else 0.0,
                   val_size=val_size,
                   overrides=tuple(sorted(overrides.items())),
                   weights=str(weights) if weights and fold == 1 and user else None, task=task)


def run_dir(root, spec):
    """Where a sweep in `root` trains `spec`: root/<dataset>/fold<f>/multiplier<m>[-align<N>]/<none|fold|distill>
    (none: the original, shared by both recipes; distill: a folded run of --recipe distill; -align<N>: --align), or
    for the compound-scaled baseline root/<dataset>/efficientnet/phi<phi>."""
    if spec.mode == "efficientnet":
        return Path(root) / spec.dataset / "efficientnet" / f"phi{spec.fold}"
    leaf = "none" if spec.fold == 1 else "distill" if spec.recipe == "distill" else "fold"
    widths = f"multiplier{spec.multiplier:.4g}" + (f"-align{spec.align}" if spec.align > 1 else "")
    return Path(root) / spec.dataset / f"fold{spec.fold}" / widths / leaf


# What makes a run of a user's task the same run: its model, data classes, shape, trained original and teacher.
USER_IDENTITY = ("model_file", "input_shape", "class_names", "weights", "teacher")


def check_same_model(spec, recorded, path):
    """A ValueError unless `recorded` (a run's result.json, or a checkpoint's "run") is a run of the same user model,
    classes, input shape, weights and teacher as `spec`, so that a savedir never passes one model's results off as
    another's. Registry tasks: nothing to compare here (check_resume)."""
    if not spec.user_task:
        return
    wanted = spec.describe()
    for key in USER_IDENTITY:
        if recorded.get(key) != wanted[key]:
            raise ValueError(f"{path} holds a run with {key} {recorded.get(key)}, not {wanted[key]}: train this "
                             "model into another savedir (or under another --name)")


def check_precision_matches(spec, recorded, path):
    """A ValueError unless `recorded` (result.json, or a checkpoint's "run"; fp32 when it says nothing) was trained
    in `spec`'s precision."""
    was = recorded.get("precision", "fp32")
    if was != spec.precision:
        flag = "fp32" if was == "fp32" else was.split()[-1]
        raise ValueError(f"{path} was trained in {was}, and this command trains in {spec.precision} "
                         f"({spec.precision_choice}): pass --amp {flag} to continue it, or train into another savedir")


# Settings in run.json that a resumed run must share with its checkpoint (a checkpoint without one is not checked).
RESUME_SETTINGS = {"batch_size": "--batch_size", "shift": "--shift", "repeat": "--repeat", "mixup": "--mixup",
                   "init": "--init", "ema": "--ema", "consistent": "--consistent"}


def check_resume(spec, state, path):
    """A ValueError unless the training checkpoint `state` (read from `path`) is a run of `spec`."""
    args = state.get("model_args", {})
    found = (state.get("dataset"), args.get("fold"), args.get("multiplier"),
             mode_of(args.get("fold"), args.get("mode", "folded")), args.get("align", 1))  # older runs: "folded" at f=1
    wanted = (spec.dataset, spec.fold, spec.multiplier, spec.mode, spec.align)
    if found != wanted:
        raise ValueError(f"checkpoint {path} is for dataset {found[0]}, fold {found[1]}, multiplier {found[2]}, "
                         f"mode {found[3]}, align {found[4]}, not {wanted[0]}, fold {wanted[1]}, multiplier "
                         f"{wanted[2]}, mode {wanted[3]}, align {wanted[4]}: pass that run's checkpoint")
    check_same_model(spec, state.get("run", {}), path)
    if state.get("recipe", "paper") != spec.recipe:
        raise ValueError(f"checkpoint {path} was trained with --recipe {state.get('recipe', 'paper')}: resume it with "
                         f"that recipe, or start a new --savedir")
    check_precision_matches(spec, state.get("run", {}), path)
    recorded, wanted = state.get("run", {}), spec.describe()
    for key, flag in RESUME_SETTINGS.items():
        if key in recorded and recorded[key] != wanted[key]:
            value = ("on" if recorded[key] else "off") if isinstance(recorded[key], bool) else recorded[key] or 0
            raise ValueError(f"checkpoint {path} was trained with {key} {recorded[key]}, and this command trains with "
                             f"{wanted[key]}: pass {flag} {value} to continue it, or start a new --savedir")
    if (recorded.get("batchnorm") or False) != (wanted["batchnorm"] or False):  # runs before it: none
        was = "on" if recorded.get("batchnorm") else "off"
        raise ValueError(f"checkpoint {path} was trained with --batchnorm {was}: resume it with --batchnorm {was}, or "
                         f"start a new --savedir")
    if state.get("slot_balance", False) != spec.protocol.slot_balance:  # checkpoints before it: balance off
        was = "on" if state.get("slot_balance", False) else "off"
        raise ValueError(f"checkpoint {path} was trained with --slot_balance {was}: resume it with --slot_balance "
                         f"{was}, or start a new --savedir")
