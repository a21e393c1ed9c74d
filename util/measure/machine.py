"""Measure this machine's peak: dense-matmul FLOP/s and memory bandwidth, plus what the machine is.

The matmul peak is the best of several square sizes and, on the CPU, of the two GEMM libraries a
user of this repository has (PyTorch's and ONNX Runtime's), fp32, plus PyTorch's bf16 on a CPU with bf16
instructions (AVX-512 BF16, AMX); on CUDA fp32, fp16 and bf16. The description records the CPU's
instruction-set features that decide which precisions run fast (avx512f, avx512_bf16, amx_bf16, ...).
Bandwidth is a large tensor copy (bytes read + bytes written per second). The report divides
achieved FLOP/s by this peak ("% of peak") and draws the roofline from both.
"""
import importlib.util
import os
import platform

import torch

from util.core.device import cpu_bf16_problem, cpu_features, cpu_name, pick_device
from util.measure.benchmark import time_calls
from util.runtime.onnx import ort_session

CPU_SIZES = (1024, 2048, 4096)
CUDA_SIZES = (4096, 8192)


def _rate(fn, work, min_time, device=torch.device("cpu")):
    """`work` units per second of `fn` over at least `min_time` seconds (after one warm-up call)."""
    fn()
    return work * time_calls(fn, device, min_time=min_time)


def torch_matmul_flops(device, dtype, sizes, min_time):
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        best = max(best, _rate(lambda: a @ b, 2 * n ** 3, min_time, device))
    return best


def onnxruntime_matmul_flops(sizes, min_time):
    """fp32 MatMul FLOP/s of ONNX Runtime's CPU GEMM (MLAS); None without onnxruntime."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import numpy as np
    from onnx import TensorProto, helper
    best = 0.0
    for n in sizes:
        io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ABC"]
        graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", io[:2], io[2:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        session = ort_session(model.SerializeToString())
        feed = {"A": np.random.rand(n, n).astype(np.float32), "B": np.random.rand(n, n).astype(np.float32)}
        best = max(best, _rate(lambda: session.run(None, feed), 2 * n ** 3, min_time))
    return best


def bandwidth(device, min_time, megabytes):
    """Bytes/s of copying a `megabytes` MB fp32 tensor (counts the read and the write)."""
    src = torch.randn(megabytes * 2 ** 20 // 4, device=device)
    dst = torch.empty_like(src)
    return _rate(lambda: dst.copy_(src), 2 * src.numel() * 4, min_time, device)


def describe(device):
    """What the machine is: the accelerator (or CPU) name, cores, threads and library versions."""
    info = {"device": str(device), "cpu": cpu_name(), "cpu_features": cpu_features(), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    if importlib.util.find_spec("openvino") is not None:
        from importlib.metadata import version
        info["openvino"] = version("openvino")
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    info["name"] = info.get("gpu") or f"{info['cpu']} ({info['cpu_cores']} cores)"
    return info


def measure_peak(device=None, min_time=0.5):
    """The machine description plus `matmul_flops` per precision and `bandwidth_bytes_per_sec`."""
    device = pick_device(device)
    result = describe(device)
    with torch.inference_mode():
        if device.type == "cuda":
            result["matmul_flops"] = {name: torch_matmul_flops(device, dtype, CUDA_SIZES, min_time)
                                      for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16),
                                                          ("bf16", torch.bfloat16))}
            result["bandwidth_bytes_per_sec"] = bandwidth(device, min_time, 1024)
        else:
            by_library = {"fp32": {"torch": torch_matmul_flops(device, torch.float32, CPU_SIZES, min_time)}}
            ort = onnxruntime_matmul_flops(CPU_SIZES, min_time)
            if ort is not None:
                by_library["fp32"]["onnxruntime"] = ort
            if cpu_bf16_problem() is None:
                by_library["bf16"] = {"torch": torch_matmul_flops(device, torch.bfloat16, CPU_SIZES, min_time)}
            result["matmul_flops_by_library"] = by_library
            result["matmul_flops"] = {p: max(libraries.values()) for p, libraries in by_library.items()}
            result["bandwidth_bytes_per_sec"] = bandwidth(device, min_time, 256)
    return result
