"""Small helpers shared by the scripts: device choice, seeding, crash-safe writes, argparse types."""
import argparse
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def pick_device(name=None):
    """`name` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def read_torch_file(path, what, fix, map_location="cpu", weights_only=False):
    """torch.load `path`; a one-line ValueError naming `what`, the file and `fix` if it cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:  # a file that is not a checkpoint fails in many ways (missing, zip, pickle, EOF, globals)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot read {what} {path} ({reason}); {fix}") from None


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_atomic(path, write):
    """Write through `write(file)` to a temporary name, fsync, rename: old or new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_atomic(obj, path):
    """torch.save `obj` to `path` crash-safely."""
    write_atomic(path, lambda f: torch.save(obj, f))


def print_json(parser, data, path=None, flag="--out"):
    """Print `data` as JSON and, with `path`, write it there crash-safely (exit 2 naming `flag` if it cannot)."""
    print(json.dumps(data, indent=2))
    if path:
        try:
            write_json_atomic(path, data)
        except OSError as e:
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
