"""Small helpers shared by the scripts: device choice, seeding, crash-safe writes and appends, argparse types."""
import argparse
import json
import os
import platform
import random
from functools import lru_cache
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


# The CPU instruction sets that decide which precisions run fast: AVX-512 / AVX-512 BF16 vector units and the
# AMX tile (matrix) units of recent Intel Xeons. `/proc/cpuinfo` names them (`flags` on x86, `Features` on Arm).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16",
                "amx_int8", "amx_fp16", "bf16", "sve")
BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16")  # native bf16 dot products: x86 AMX or AVX-512, Arm BF16


@lru_cache(maxsize=None)
def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name():
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags():
    """The instruction-set flags the CPU reports (a set; empty where /proc/cpuinfo is not available)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_features():
    """Which of CPU_FEATURES this CPU has, as {name: bool}: the part of its ISA that decides bf16 and int8 speed."""
    flags = cpu_flags()
    return {name: name in flags for name in CPU_FEATURES}


def cpu_bf16_problem(fix="use --precision fp32"):
    """Why bf16 cannot run fast on this CPU, ending in `fix` (None when it can).

    bf16 runs fast only with native bf16 instructions (x86 avx512_bf16 or amx_bf16, Arm bf16); without them
    oneDNN emulates bf16 and runs slower than fp32, so a bf16 figure would mislead.
    """
    flags = cpu_flags()
    if not flags and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None  # no /proc/cpuinfo to read: trust oneDNN's own check
    if flags & set(BF16_FEATURES):
        return None
    return (f"precision bf16 on the CPU needs bf16 instructions ({' or '.join(BF16_FEATURES[:2])}), which this CPU "
            f"({cpu_name()}) lacks: {fix}")


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


def markdown_table(header, rows):
    """The lines of a markdown table with column titles `header` and `rows` of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(map(str, row)) + " |" for row in rows]


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
