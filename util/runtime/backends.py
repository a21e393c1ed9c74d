"""How a model runs: the backends and precisions, which of them can run here, and a runner for each.

Backends:
  eager        PyTorch eager, channels-last for the CNNs
  compile      torch.compile (inductor; weight freezing on the CPU, max-autotune with CUDA graphs on CUDA)
  cudagraph    eager PyTorch captured once into a CUDA graph and replayed (CUDA only): no compilation,
               set up in a second, no per-layer kernel launches from Python
  onnxruntime  the model exported to ONNX and run by ONNX Runtime (CPU, or CUDA with onnxruntime-gpu)
  openvino     the same ONNX export run by OpenVINO (CPU, fp32 and int8; `pip install openvino`)
  tensorrt     torch-tensorrt (CUDA only, when installed)

A runner takes a batch of model inputs and returns their logits; `chunked` runs a batch in slices (on the CPU the
activations of a slice stay in the caches). `check_logits` compares a runner with eager fp32 PyTorch, so that a fast
but wrong backend is refused before anyone times it. Timing lives in util/measure/.
"""
import importlib.util
import logging
import shutil

import torch

from util.core.device import cpu_bf16_problem
from util.runtime.int8 import int8_dot_products
from util.runtime.onnx import onnxruntime_runner, openvino_runner

BACKENDS = ("eager", "compile", "cudagraph", "onnxruntime", "openvino", "tensorrt")
INT8_BACKENDS = ("onnxruntime", "openvino")  # they run the ONNX int8 model (util/runtime/int8.py)
# The torch dtype of the model and its inputs per precision; int8 models take fp32 inputs (util/runtime/int8.py
# quantizes inside the ONNX model, calibrated on random inputs of the model's shape for a throughput measurement).
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}
# The fastest backend measured per device type (results/README.md): on a 2-core AMD EPYC ONNX Runtime
# was the fastest for the original CNNs and tied eager for the FoldedCNNs; torch.compile was slower.
# On CUDA torch.compile in max-autotune mode: the fastest of eager, cudagraph and every torch.compile mode
# on an H100 (results/h100/README.md), folded and original alike.
DEFAULT_BACKEND = {"cpu": "onnxruntime", "cuda": "compile"}
# bf16 on the CPU (oneDNN's bf16 kernels, on CPUs with AVX-512 BF16 or AMX): PyTorch's backends only. compile first:
# on a 2-core AMD EPYC (Zen 4) it beat eager at f=1 on 9 of 10 CNNs and at f=4 on 8 of 10
# (results/amd-epyc-zen4/bf16-report/report.md).
CPU_BF16_BACKENDS = ("compile", "eager")
# int8 on the CPU: both backends run the same QDQ model. On a 2-core AMD EPYC Zen 4 (AVX-512 VNNI) OpenVINO ran it
# 1.02-1.73x as fast as ONNX Runtime, faster beyond the trials' spread on all 20 configurations of the 10 CNNs at f=1
# and 4 (results/amd-epyc-zen4/int8/openvino_int8.md), and fp32 0.80-1.00x (openvino_fp32.md); on a Zen 3 without
# VNNI a probe found them tied. So int8 defaults to OpenVINO where the CPU has int8 dot products (VNNI, AMX: the
# AMX kind is not measured) and OpenVINO is installed, to ONNX Runtime elsewhere; fp32 stays on ONNX Runtime.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch.compile's mode per device type when --compile_mode is not given (results/h100/compile_modes.md):
# max-autotune tunes the kernels and replays CUDA graphs; it costs 10-20 s of set-up per configuration.
DEFAULT_COMPILE_MODE = {"cpu": "default", "cuda": "max-autotune"}
CHUNK_CANDIDATES = (64, 32, 16, 8)  # folded inputs per chunk tried on the CPU, besides the whole batch
REFERENCE_ROWS = 32                 # inputs compared against eager PyTorch


class BackendError(ValueError):
    """A backend that cannot run here, or whose logits disagree with eager PyTorch."""


def backend_problem(backend, device, precision):
    """Why `backend` cannot run `precision` on `device` here (None when it can)."""
    if precision == "int8":
        if device.type != "cpu":
            return ("precision int8 runs on the CPU (ONNX Runtime's static quantization): use --device cpu, or "
                    "--precision fp16 on CUDA")
        if backend not in INT8_BACKENDS:
            return (f"backend {backend} has no int8 here: use --backend " + " or ".join(INT8_BACKENDS)
                    + " for --precision int8")
    if device.type == "cpu" and precision == "fp16":
        return "precision fp16 needs CUDA; on the CPU use --precision fp32, or bf16 on a CPU with bf16 instructions"
    if device.type == "cpu" and precision == "bf16":
        problem = cpu_bf16_problem()
        if problem:
            return problem
        if backend not in CPU_BF16_BACKENDS:
            return (f"backend {backend} runs fp32 only on the CPU; for --precision bf16 use --backend "
                    + " or ".join(CPU_BF16_BACKENDS))
    if backend == "cudagraph" and device.type != "cuda":
        return "backend cudagraph runs on CUDA only; on the CPU use --backend onnxruntime, eager or compile"
    if backend == "tensorrt":
        if device.type != "cuda":
            return "backend tensorrt runs on CUDA only; on the CPU use --backend onnxruntime, eager or compile"
        if importlib.util.find_spec("torch_tensorrt") is None:
            return "backend tensorrt needs torch-tensorrt: pip install torch-tensorrt, or pick another --backend"
    if backend == "onnxruntime":
        if precision == "bf16":
            return "backend onnxruntime runs fp32 or fp16 here; use --precision fp16 or another --backend"
        if importlib.util.find_spec("onnxruntime") is None:
            return "backend onnxruntime needs onnxruntime: pip install -r requirements.txt"
        import onnxruntime
        provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        if provider not in onnxruntime.get_available_providers():
            return (f"backend onnxruntime on {device.type} needs {provider}, which this onnxruntime lacks "
                    "(pip install onnxruntime-gpu for CUDA), or pick another --backend")
    if backend == "openvino":
        if device.type != "cpu":
            return "backend openvino runs on the CPU here; on CUDA use --backend compile or onnxruntime"
        if importlib.util.find_spec("openvino") is None:
            return "backend openvino needs OpenVINO: pip install openvino, or pick another --backend"
    if backend == "compile" and device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        return "backend compile on the CPU needs a C++ compiler (apt install g++), or pick another --backend"
    return None


def default_backend(device, precision):
    """The fastest backend measured for `precision` on this kind of device."""
    if precision == "int8":  # OpenVINO where the CPU has VNNI and it is installed (measured: above CPU_BF16_BACKENDS)
        fast = int8_dot_products() and backend_problem("openvino", device, precision) is None
        return "openvino" if fast else "onnxruntime"
    if device.type == "cpu" and precision == "bf16":
        usable = [b for b in CPU_BF16_BACKENDS if backend_problem(b, device, precision) is None]
        return usable[0] if usable else CPU_BF16_BACKENDS[-1]
    return DEFAULT_BACKEND.get(device.type, "eager")


def available_backends(device, precision="fp32"):
    """Backends that can run here, fastest-first by the measured default."""
    device = torch.device(device)
    found = [b for b in BACKENDS if backend_problem(b, device, precision) is None]
    default = default_backend(device, precision)
    return sorted(found, key=lambda b: b != default)


def resolve_backend(backend, device, precision):
    """`backend`, or the default for `device` and `precision`; raise BackendError if it cannot run here."""
    if backend == "auto":
        backend = default_backend(device, precision)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    problem = backend_problem(backend, device, precision)
    if problem:
        raise BackendError(problem)
    return backend


def make_runner(model, example, backend, device, compile_mode="auto", int8=False):
    """A function running `model` with `backend` on a batch shaped like `example` (on `device`); `int8`: the ONNX
    int8 model of it (backends onnxruntime and openvino)."""
    if backend == "eager":
        return model
    if backend == "compile":
        return _compiled_runner(model, device, compile_mode)
    if backend == "cudagraph":
        return _cuda_graph_runner(model, example)
    if backend == "onnxruntime":
        return onnxruntime_runner(model, example, device, int8)
    if backend == "openvino":
        return openvino_runner(model, example, int8)
    import torch_tensorrt
    return torch_tensorrt.compile(model, ir="dynamo", inputs=[example], enabled_precisions={example.dtype})


def _compiled_runner(model, device, compile_mode):
    """`model` under torch.compile, with the compiler settings it needs applied to its own calls only (every
    compilation and recompilation happens inside one of them), not to the whole process."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU hosts
    if compile_mode == "auto":
        compile_mode = DEFAULT_COMPILE_MODE[device.type]
    if compile_mode not in COMPILE_MODES:
        raise BackendError(f"unknown compile mode {compile_mode!r}; choose one of: {', '.join(COMPILE_MODES)}")
    compiled = torch.compile(model, mode=compile_mode, dynamic=False)
    # One graph per chunk size tried (and the last, shorter chunk): stay compiled, never fall back to eager.
    limit = max(dynamo_config.recompile_limit, 4 * (len(CHUNK_CANDIDATES) + 2))
    freezing = device.type == "cpu" or inductor_config.freezing  # CPU: weights folded and pre-packed for oneDNN

    def run(x):
        with dynamo_config.patch(recompile_limit=limit), inductor_config.patch(freezing=freezing):
            return compiled(x)
    return run


def _cuda_graph_runner(model, example):
    """`model` on batches shaped like `example`, replayed from one captured CUDA graph.

    The returned logits live in the graph's output buffer: the next call overwrites them."""
    static_x = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = model(static_x)

    def run(x):
        if x.shape != static_x.shape:
            raise BackendError(f"backend cudagraph was captured for inputs {tuple(static_x.shape)}, "
                               f"got {tuple(x.shape)}: use --chunk full or another --backend")
        static_x.copy_(x)
        graph.replay()
        return static_y
    return run


def chunked(run, chunk):
    """`run` applied to `chunk`-input slices of the batch, outputs concatenated."""
    if chunk is None:
        return run
    return lambda x: torch.cat([run(part) for part in x.split(chunk)])


def logits_tolerance(largest_logit, precision="fp32"):
    """How far logits may stray from eager fp32 PyTorch's: relative to the largest logit, looser below fp32 (int8 by
    far the loosest: a check that the backend computes the same model, not of accuracy, which export.py --int8
    measures on the task's test images)."""
    relative = {"fp32": 1e-3, "int8": 0.3}.get(precision, 3e-2)
    return (1e-4 if precision == "fp32" else 1e-3) + relative * largest_logit


def check_logits(run, model, x, precision):
    """Max abs difference of `run(x)` from eager fp32 PyTorch on the first inputs; BackendError if too large."""
    rows = x[:REFERENCE_ROWS].float().cpu().contiguous()
    with torch.inference_mode():
        got = run(x)[:rows.shape[0]].float().cpu()
        reference = model(rows)
    error = (got - reference).abs().max().item()
    scale = reference.abs().max().item()
    tolerance = logits_tolerance(scale, precision)
    if not error <= tolerance:  # also catches NaN
        raise BackendError(f"logits differ from eager PyTorch by {error:.3g} (tolerance {tolerance:.3g}, "
                           f"largest logit {scale:.3g}): this backend computes something else; use --backend eager")
    return error
