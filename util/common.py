"""Small helpers shared by the scripts: device choice, seeding, crash-safe writes and appends, argparse types."""
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


def append_line(path, line):
    """Append `line` and a newline to `path`, flushed to disk: a crash loses at most this line, torn.

    Readers drop a torn last line (one without its newline): see `complete_lines` and `keep_lines`.
    """
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def complete_lines(path):
    """The lines of `path` that end in a newline ([] when it is missing): a torn last line is left out."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def keep_lines(path, n):
    """Keep the first `n` complete lines of `path` (rewritten crash-safely, only when that drops something)."""
    text = Path(path).read_text()
    lines = complete_lines(path)[:n]
    kept = "".join(f"{line}\n" for line in lines)
    if kept != text:
        write_text_atomic(path, kept)
    return lines


def print_json(parser, data, path=None, flag="--out"):
    """Print `data` as JSON and, with `path`, write it there crash-safely (exit 2 naming `flag` if it cannot)."""
    print(json.dumps(data, indent=2))
    if path:
        try:
            write_json_atomic(path, data)
        except OSError as e:
            parser.exit(2, f"error: cannot write {path}: {e.strerror}; choose a writable {flag} PATH\n")


def print_text(parser, lines, path=None, flag="--out"):
    """Print `lines` and, with `path`, write them there crash-safely (exit 2 naming `flag` if it cannot)."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if path:
        try:
            write_text_atomic(path, text)
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
