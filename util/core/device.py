"""Devices and the CPU: which device to run on, which instruction sets the CPU has, seeding."""
import platform
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def pick_device(name=None):
    """`name` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


# The CPU instruction sets that decide which precisions run fast: AVX-512 / AVX-512 BF16 vector units, the int8 dot
# products (VNNI, in AVX-512 or AVX), and the AMX tile (matrix) units of recent Intel Xeons. `/proc/cpuinfo` names them (`flags` on x86, `Features` on Arm).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_tile",
                "amx_bf16", "amx_int8", "amx_fp16", "bf16", "sve")
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
