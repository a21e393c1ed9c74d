"""A user's own CNN: `FILE.py:FUNCTION` builds the original, models.fold_cnn folds it.

The file is run as Python code (only name files you trust); FUNCTION() takes no arguments and returns the
original (unfolded) classifier, (N, C, H, W) images in, (N, K) logits out.
"""
import importlib.util
import re
import sys
from pathlib import Path

import torch

from models.fold import FoldedClassifier, check_fold
from models.fold_cnn import fold_cnn


def split_model_file(spec):
    """(path, function) of a `FILE.py:FUNCTION` spec; a ValueError naming the form otherwise."""
    path, _, name = str(spec).rpartition(":")
    if not path or not name:
        raise ValueError(f"--model_file {spec!r}: give FILE.py:FUNCTION, for example my_models.py:build")
    return Path(path), name


def model_key(spec):
    """A user model's name in results CSVs and reports: FILE.FUNCTION (the file's name without .py), so that two
    files' `build` functions stay apart."""
    path, name = split_model_file(spec)
    return f"{path.stem}.{name}"


def absolute_model_file(spec):
    """`spec` with its file made absolute, so that a checkpoint rebuilds the model from any working directory."""
    path, name = split_model_file(spec)
    return f"{path.resolve()}:{name}"


def load_model_file(spec):
    """The original model that `spec` ("path/to/file.py:function") builds; a one-line ValueError if the file is
    missing, fails to run, lacks the function, or the function returns no nn.Module."""
    path, name = split_model_file(spec)
    if not path.is_file():
        raise ValueError(f"--model_file {spec!r}: no file {path}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # the file may import its neighbours (from my_layers import ...), as when run itself
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(f"user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's file: whatever it raises, say where
        raise ValueError(f"--model_file {spec!r}: running {path} failed: {type(e).__name__}: {e}") from None
    build = getattr(module, name, None)
    if not callable(build):
        raise ValueError(f"--model_file {spec!r}: {path} defines no function {name}")
    try:
        model = build()
    except Exception as e:
        raise ValueError(f"--model_file {spec!r}: {name}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"--model_file {spec!r}: {name}() returned {type(model).__name__}, not an nn.Module")
    return model


def first_line(error):
    """The first line of an error's message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0]


@torch.no_grad()
def check_model(model, spec, input_shape, num_classes=None):
    """The number of logits `model` returns per image of `input_shape` (C, H, W); a one-line ValueError, in terms of
    --input_shape, when it rejects such images or does not return (N, K) logits (K = `num_classes` if given)."""
    shape = " ".join(map(str, input_shape))
    try:
        logits = model.eval()(torch.rand(2, *input_shape))
    except Exception as e:
        raise ValueError(f"--model_file {spec}: the model rejects images of --input_shape {shape} "
                         f"({type(e).__name__}: {first_line(e)}); pass the --input_shape C H W it takes") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 2:
        raise ValueError(f"--model_file {spec}: for 2 images of --input_shape {shape} the model returns "
                         f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}, not (2, K) logits")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"--model_file {spec}: the model returns {logits.shape[1]} logits per image, but the data "
                         f"has {num_classes} classes: make its last layer emit {num_classes}")
    return logits.shape[1]


def load_weights(model, path, spec):
    """Load a plain state dict (what `torch.save(model.state_dict(), path)` writes) into `model`; a one-line
    ValueError naming the keys that do not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"--weights {path}: no such file") from None
    except Exception as e:
        raise ValueError(f"--weights {path}: cannot read it ({first_line(e)}); save the original with "
                         "torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "model_args" in state:
        state = state["model"]  # a checkpoint of this repository: its FoldedClassifier's weights
        state = {k.removeprefix("net."): v for k, v in state.items()}
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"--weights {path} is not a state dict; save the original with "
                         "torch.save(model.state_dict(), path)")
    return fit_weights(model, state, f"--weights {path}", spec)


def fit_weights(model, state, label, spec):
    """Load the plain state dict `state` into `model`; a one-line ValueError, starting with `label`, naming the keys
    that do not fit."""
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    wrong = [f"{k} {tuple(state[k].shape)} (the model's: {tuple(wanted[k].shape)})" for k in wanted
             if k in state and state[k].shape != wanted[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" for what, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ", wrong)) if keys]
        raise ValueError(f"{label} do not fit the model of --model_file {spec} ({'; '.join(parts)}): "
                         "pass the state dict of this model")
    model.load_state_dict(state)
    return model


def require_input_shape(input_shape):
    """A one-line ValueError unless `input_shape` is one image's (C, H, W)."""
    if not input_shape or len(input_shape) != 3:
        raise ValueError("a --model_file model needs --input_shape C H W (one image's channels, height, width)")


def checked_model(spec, input_shape, num_classes=None):
    """The original model of --model_file `spec`, checked to take images of --input_shape (and to return
    `num_classes` logits when given); one-line ValueErrors."""
    require_input_shape(input_shape)
    original = load_model_file(spec)
    check_model(original, spec, input_shape, num_classes)
    return original


def fold_user_model(original, input_shape, fold=1, multiplier=None, align=1, spec="(your model)"):
    """The original on plain (N, C, H, W) image batches at f=1, its FoldedCNN (freshly initialised, models.fold_cnn)
    above; a FoldedClassifier either way. Images the original rejects are a ValueError naming --input_shape."""
    require_input_shape(input_shape)
    check_model(original, spec, input_shape)
    if check_fold(fold) == 1:
        return FoldedClassifier(original, 1)
    return fold_cnn(original, fold, multiplier, example_input=torch.rand(2, *input_shape), align=align)


def user_classifier(spec, input_shape, fold=1, multiplier=None, align=1):
    """fold_user_model of the model that `spec` (FILE.py:FUNCTION) builds."""
    return fold_user_model(load_model_file(spec), input_shape, fold, multiplier, align, spec)
