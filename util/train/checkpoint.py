"""The one checkpoint format: what training (util.train.trainer) saves and what every tool loads.

A checkpoint is a dict of tensors and plain Python values (it loads with `weights_only=True`):
  model_args  {"task", "fold", "multiplier", "mode", "align"}: `build_classifier(**model_args)` rebuilds the
              model (files written before --align have no "align": the paper's widths); a user's model
              (train.py --model_file) adds "model_file" (FILE.py:FUNCTION, the file's absolute path),
              "input_shape", "class_names" and "data": rebuilding it runs that file
  model       the FoldedClassifier's state dict
  dataset     the dataset it was trained on (a task, or synthetic-<task>)
  run         the run's spec (util.train.spec.RunSpec.describe(), as in run.json; files before it have none)
  and, for resuming training: recipe, slot_balance, epoch, best, optimizer, scaler, scheduler, curriculum, rng,
  train_images, train_seconds.
`load_classifier(path)` rebuilds the model of any checkpoint, for a resume, a distillation teacher,
ONNX export or video classification. A teacher may also be a plain state dict: of this project's
original model, or of the authors' CIFAR ResNet-18 (their `model_files/cifar10/resnet18/model.t7`,
torchvision-style key names), renamed onto this project's model.
"""
import re
import sys
from pathlib import Path

import numpy as np
import torch

from config.tasks import USER, get_task, user_task
from models import build_classifier
from models.fold import check_align, check_fold, check_multiplier
from models.user import first_line, fit_weights
from util.core.files import save_atomic

FIX = "pass a best.pth or current.pth written by fold_trainer.py"
TRAINING_KEYS = ("epoch", "best", "optimizer", "scaler", "rng", "train_images", "train_seconds")


def checkpoint_path(path):
    """`path`, or `path/best.pth` when it is a run directory."""
    path = Path(path)
    return path / "best.pth" if path.is_dir() else path


def model_args(task, fold, multiplier, mode="folded", align=1):
    """The constructor arguments saved with the weights (mode "efficientnet": fold is phi, no multiplier; a user's
    task: how to rebuild its model and what its classes are)."""
    task = get_task(task)
    args = {"task": task.name, "fold": fold, "multiplier": multiplier, "mode": mode, "align": align}
    if task.family == USER:
        args.update(model_file=task.model_file, input_shape=list(task.input_shape),
                    class_names=list(task.class_names), data=task.data)
    return args


def task_of(args):
    """The task of a checkpoint's model_args: a registry task, or the user's task they describe."""
    if "model_file" in args:
        return user_task(args["task"], args["model_file"], args.get("data"), args["input_shape"], args["class_names"])
    return get_task(args["task"])


def save_checkpoint(path, **contents):
    """Write a checkpoint crash-safely (the old file or the new one, never half of one)."""
    save_atomic(contents, path)


# The authors' ResNet-18 names: conv1, bn1, layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2,downsample.{0,1}}, fc.
AUTHORS_RESNET_KEY = re.compile(r"^(?:module\.)?(?:(conv1|bn1|fc)|layer([1-4])\.([01])\.(conv1|bn1|conv2|bn2|downsample\.[01]))"
                                r"\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def is_authors_resnet(state):
    """Whether a plain state dict has the authors' ResNet-18 key names."""
    return any(k.endswith("layer1.0.conv1.weight") for k in state) and any(k.endswith("fc.weight") for k in state)


def from_authors_resnet(state, path, what="teacher"):
    """The authors' ResNet-18 state dict renamed onto this project's FoldedClassifier keys (every key used)."""
    renamed = {}
    for key, tensor in state.items():
        match = AUTHORS_RESNET_KEY.match(key)
        if not match:
            raise ValueError(f"{what} {path}: key {key!r} is not a key of the authors' ResNet-18; pass their "
                             "model.t7 unchanged or a checkpoint written by fold_trainer.py")
        top, stage, block, layer, field = match.groups()
        if top:
            name = {"conv1": "conv1", "bn1": "bn1", "fc": "linear"}[top]
        else:
            name = f"layers.{2 * (int(stage) - 1) + int(block)}.{layer.replace('downsample', 'shortcut')}"
        renamed[f"net.{name}.{field}"] = tensor
    return renamed


def read_checkpoint(path, device="cpu", what="checkpoint", fix=FIX):
    """The dict stored at `path` (a file or a run directory); a one-line ValueError if it cannot be read."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path}: no such file; {fix}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a file that is not a checkpoint fails in many ways (zip, pickle, EOF, globals)
        # PyTorch's own message for a file that needs more than tensors and plain data advises loading it as code:
        # never relayed (files load as data here)
        why = ("it holds objects other than tensors and plain data, which this repository never saves"
               if "weights_only" in str(e) else first_line(e))
        kind = "an exported ONNX model, not a checkpoint" if path.suffix == ".onnx" else f"not a checkpoint ({why})"
        raise ValueError(f"cannot read {what} {path}: {kind}; {fix}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{what} {path} holds a {type(state).__name__}, not a checkpoint; {fix}")
    return state


def load_classifier(path, device="cpu", task=None, what="checkpoint", fix=FIX):
    """`(classifier, checkpoint)`: the model of `path` rebuilt from its model_args, in eval mode on `device`.

    With `task`, a plain state dict of that task's original (f=1) model also loads (a teacher file
    saved without training state); `checkpoint` is then `{"model": state dict}`.
    """
    state = read_checkpoint(path, device, what, fix)
    path = checkpoint_path(path)
    if "model_args" in state and "model" in state:
        try:
            args = state["model_args"]
            task, fold, mode = task_of(args), check_fold(args["fold"]), args.get("mode", "folded")
            multiplier = None if mode == "efficientnet" else check_multiplier(args["multiplier"], fold)
            align = check_align(args.get("align", 1))  # files written before --align have the paper's widths
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{what} {path}: its model_args do not describe a model ({e}); {fix}") from None
        weights = state["model"]
    elif task is not None and "model" not in state and all(torch.is_tensor(v) for v in state.values()):
        task, fold, multiplier, mode, align = get_task(task), 1, 1.0, "folded", 1
        if task.family == USER:  # the user's original, saved as PyTorch users do: fitted key by key
            print(f"{what} {path}: rebuilding its model by running {task.model_file}", file=sys.stderr, flush=True)
            classifier = build_classifier(task)
            fit_weights(classifier.net, state, f"{what} {path}", task.model_file)
            return classifier.to(device).eval(), {"model": classifier.state_dict()}
        weights = from_authors_resnet(state, path, what) if is_authors_resnet(state) else state
        state = {"model": weights}
    else:
        raise ValueError(f"{what} {path} is not a FoldedCNN checkpoint of this repository (no model_args); {fix}")
    if task.family == USER:
        print(f"{what} {path}: rebuilding its model by running {task.model_file}", file=sys.stderr, flush=True)
    try:
        classifier = build_classifier(task, fold, multiplier, mode, align)
    except ValueError as e:
        if task.family == USER:
            raise ValueError(f"{what} {path} was trained with the model of {task.model_file}, which no longer "
                             f"builds it ({e}); restore that file or retrain") from None
        raise ValueError(f"{what} {path}: its model_args do not describe a model ({e}); {fix}") from None
    for key, tensor in classifier.state_dict().items():  # files of older PyTorch versions lack this counter
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = tensor
    try:
        classifier.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as e:
        reason = str(e).strip().splitlines()[-1].strip()
        if task.family == USER:
            raise ValueError(f"{what} {path}: its weights do not fit the model {task.model_file} builds now ({reason}); "
                             "the file changed since training: restore it or retrain") from None
        model = (f"compound-scaled baseline at phi {fold}" if mode == "efficientnet"
                 else f"FoldedCNN at fold {fold} (multiplier {multiplier:g})")
        raise ValueError(f"{what} {path}: its weights do not fit {task.name}'s {model}: {reason}") from None
    return classifier.to(device).eval(), state


def read_training_state(path, device="cpu"):
    """The training checkpoint at `path` (a ValueError unless it is one); util.train.spec.check_resume then checks
    that it is the run's."""
    fix = "pass a current.pth or best.pth written by fold_trainer.py"
    state = read_checkpoint(path, device, fix=fix)
    if "model_args" not in state or not set(TRAINING_KEYS) <= state.keys():
        raise ValueError(f"{path} is not a training checkpoint; {fix}")
    return state


def rng_state():
    """Every random generator's state, as tensors and numbers (so that it loads with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
