"""Inference: backends, chunking, timing, the correctness check and the benchmark of one configuration.

One configuration is a task, a mode (original / folded / efficientnet), a fold (phi for the
efficientnet baseline), a batch size in images, a precision, a device and a backend. A FoldedCNN
runs `batch // f` folded inputs, each holding f images; throughput counts images.

Backends:
  eager        PyTorch eager, channels-last for the CNNs
  compile      torch.compile (inductor; weight freezing on the CPU, max-autotune with CUDA graphs on CUDA)
  cudagraph    eager PyTorch captured once into a CUDA graph and replayed (CUDA only): no compilation,
               set up in a second, no per-layer kernel launches from Python
  onnxruntime  the model exported to ONNX and run by ONNX Runtime (CPU, or CUDA with onnxruntime-gpu)
  tensorrt     torch-tensorrt (CUDA only, when installed)

On the CPU every backend runs a batch in cache-sized chunks (tuned during warm-up by default): the
batch of 1024 images goes in and 1024 images' logits come out, but the activations of a chunk stay
in the CPU caches instead of streaming 100s of MB through memory per layer.

Before timing, the backend's logits are compared with eager PyTorch in fp32 on the same inputs, so
a fast but wrong backend cannot report a number.
"""
import contextlib
import copy
import importlib.util
import io
import logging
import shutil
import time
import warnings
from dataclasses import asdict, dataclass

import torch

from config.tasks import all_tasks, get_task
from models import build_model, mode_of, model_key
from models.flops import count_model_flops, flops_per_image
from models.user import model_key as user_model_key, user_classifier
from models.fold import check_align, check_fold
from util.core.cli import add_device_arg, positive_int
from util.core.device import cpu_bf16_problem, pick_device
from util.deploy.int8 import CALIBRATION_BATCH, quantize
from util.measure.compare import medians

BACKENDS = ("eager", "compile", "cudagraph", "onnxruntime", "tensorrt")
# The torch dtype of the model and its inputs per precision; int8 models take fp32 inputs (util/deploy/int8.py
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
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch.compile's mode per device type when --compile_mode is not given (results/h100/compile_modes.md):
# max-autotune tunes the kernels and replays CUDA graphs; it costs 10-20 s of set-up per configuration.
DEFAULT_COMPILE_MODE = {"cpu": "default", "cuda": "max-autotune"}
CHUNK_CANDIDATES = (64, 32, 16, 8)  # folded inputs per chunk tried on the CPU, besides the whole batch
REFERENCE_ROWS = 32                 # inputs compared against eager PyTorch


@dataclass
class Config:
    task: str
    mode: str = "folded"
    fold: int = 1
    batch_size: int = 1024
    backend: str = "auto"
    precision: str = "fp32"
    device: str = "auto"
    chunk: str = "auto"
    channels_last: bool = True  # eager/compile only; False is plain NCHW PyTorch
    compile_mode: str = "auto"  # backend compile only: one of COMPILE_MODES, auto = DEFAULT_COMPILE_MODE
    model_file: str = None  # a user's model instead of the task's: "path.py:function" (see user_model)
    input_shape: tuple = None  # the user's model's (C, H, W)
    align: int = 1  # > 1: the FoldedCNN's widened layers rounded up to a multiple of it (models.build_model)


def config_from_args(args, task, mode, fold, batch_size=None, **changes):
    """The Config of one configuration measured with the measurement flags in `args` (add_measurement_args, and
    --align, --model_file and --input_shape where the command has them), by keyword; `changes` override any field."""
    settings = dict(task=task, mode=mode, fold=fold, batch_size=batch_size or args.batch_size, backend=args.backend,
                    precision=args.precision, device=str(args.device), chunk=args.chunk,
                    channels_last=not args.nchw, compile_mode=args.compile_mode,
                    model_file=getattr(args, "model_file", None),
                    input_shape=tuple(args.input_shape) if getattr(args, "input_shape", None) else None,
                    align=getattr(args, "align", 1) if mode == "folded" else 1)
    return Config(**{**settings, **changes})


def user_model(spec, input_shape, fold, align=1):
    """(model, one input's shape, FLOPs per image, name) of a user's model at fold `fold`: the original as built
    by `spec` for f=1, its FoldedCNN (models.fold_cnn, widths aligned to `align`) otherwise."""
    net = user_classifier(spec, input_shape, fold, align=align).net.eval()
    c, h, w = input_shape
    shape = (fold * c, h, w)
    return net, shape, count_model_flops(net, shape) / fold, user_model_key(spec)


class BackendError(ValueError):
    """A backend that cannot run here, or whose logits disagree with eager PyTorch."""


def inputs_per_batch(batch_size, fold, mode):
    """Inputs in one batch of `batch_size` images: a folded input holds f images."""
    per_input = fold if mode == "folded" else 1
    if batch_size < per_input:
        raise ValueError(f"batch size {batch_size} is smaller than the fold {fold}: "
                         f"use a batch size of at least {per_input} images")
    return batch_size // per_input


def backend_problem(backend, device, precision):
    """Why `backend` cannot run `precision` on `device` here (None when it can)."""
    if precision == "int8":
        if device.type != "cpu":
            return ("precision int8 runs on the CPU (ONNX Runtime's static quantization): use --device cpu, or "
                    "--precision fp16 on CUDA")
        if backend != "onnxruntime":
            return f"backend {backend} has no int8 here: use --backend onnxruntime for --precision int8"
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
    if backend == "compile" and device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        return "backend compile on the CPU needs a C++ compiler (apt install g++), or pick another --backend"
    return None


def default_backend(device, precision):
    """The fastest backend measured for `precision` on this kind of device."""
    if precision == "int8":
        return "onnxruntime"
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


def onnx_model(model, example, batch_multiple=1):
    """`model` exported to ONNX (bytes) with a dynamic batch dimension, input `x`, output `logits`.

    The batch dimension is named `batch`; with `batch_multiple` m > 1 it is declared as m x `groups`
    (for a model that only takes batches that are multiples of m, such as a FoldedClassifier).
    """
    batch = torch.export.Dim("batch") if batch_multiple == 1 else batch_multiple * torch.export.Dim("groups")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["x"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto.SerializeToString()


def ort_session(onnx_bytes, device=torch.device("cpu")):
    """An ONNX Runtime session for `onnx_bytes` on `device`, with as many threads as PyTorch uses, quiet."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    if device.type == "cuda":
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=providers)


def _onnxruntime_runner(model, example, device, int8=False, seed=0):
    """ONNX Runtime running `model`; `int8`: quantized, calibrated on random inputs drawn as the measured ones are
    (standard normal, seeded, shaped like `example`'s): a throughput measurement on random weights needs no images."""
    onnx_bytes = onnx_model(model, example[:2])
    if int8:
        generator = torch.Generator().manual_seed(seed)
        calibration = torch.randn(4 * CALIBRATION_BATCH, *example.shape[1:], generator=generator).numpy()
        onnx_bytes = quantize(onnx_bytes, calibration)
    session = ort_session(onnx_bytes, device)

    if device.type == "cpu":
        def run(x):
            return torch.from_numpy(session.run(None, {"x": x.contiguous().numpy()})[0])
        return run

    def run(x):  # keep the data on the GPU: bind the torch tensors' memory
        x = x.contiguous()
        out = torch.empty((x.shape[0], *model_output_shape), dtype=x.dtype, device=x.device)
        binding = session.io_binding()
        binding.bind_input("x", "cuda", device.index or 0, _np_dtype(x.dtype), tuple(x.shape), x.data_ptr())
        binding.bind_output("logits", "cuda", device.index or 0, _np_dtype(x.dtype), tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)
        return out
    with torch.no_grad():
        model_output_shape = tuple(model(example[:1]).shape[1:])
    return run


def _np_dtype(dtype):
    import numpy as np
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]


def make_runner(model, example, backend, device, compile_mode="auto", int8=False):
    """A function running `model` with `backend` on a batch shaped like `example` (on `device`); `int8`: ONNX
    Runtime's int8 model of it."""
    if backend == "eager":
        return model
    if backend == "compile":
        return _compiled_runner(model, device, compile_mode)
    if backend == "cudagraph":
        return _cuda_graph_runner(model, example)
    if backend == "onnxruntime":
        return _onnxruntime_runner(model, example, device, int8)
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


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, iters=1, min_time=0.0):
    """Calls of `fn()` per second over at least `iters` calls and at least `min_time` seconds."""
    synchronize(device)
    start, done = time.perf_counter(), 0
    while True:
        fn()
        done += 1
        if done >= iters:
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return done / elapsed


def tune_chunk(run, x, device):
    """The chunk size (inputs; None = whole batch) that runs `x` fastest, best of two batches each after a warm-up."""
    n = x.shape[0]
    candidates = [None] + [c for c in CHUNK_CANDIDATES if c < n]
    speed = {}
    for chunk in candidates:
        runner = chunked(run, chunk)
        runner(x)
        speed[chunk] = max(time_calls(lambda: runner(x), device) for _ in range(2))
    return max(speed, key=speed.get)


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


@dataclass
class Measurement:
    model: str
    task: str
    mode: str
    fold: int
    batch_size: int
    backend: str
    precision: str
    device: str
    chunk: int
    trial: int
    images_per_sec: float
    flops_per_sec: float
    max_abs_error: float
    align: int = 1

    def line(self):
        """One machine-readable `key=value` line."""
        return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in asdict(self).items())


class Benchmark:
    """A configuration set up once (model built, backend compiled, chunk tuned, logits checked),
    then timed as often as wanted with `trial()`."""

    def __init__(self, config, warmup=2, seed=0):
        self.config = config
        task = None if config.model_file else get_task(config.task)
        mode, fold = config.mode, check_fold(config.fold)
        self.align = check_align(config.align) if mode == "folded" and fold > 1 else 1  # f=1: the original
        if config.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {config.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        self.device = pick_device(config.device)
        self.backend = resolve_backend(config.backend, self.device, config.precision)
        n = inputs_per_batch(config.batch_size, fold, mode)
        self.images = n * (fold if mode == "folded" else 1)
        torch.manual_seed(seed)
        if config.model_file:
            model, shape, self.flops_per_image, self.key = user_model(config.model_file, config.input_shape, fold,
                                                                      self.align)
        else:
            model, shape = build_model(task, fold, mode, align=self.align)
            self.key = model_key(task, mode)
            self.flops_per_image = (count_model_flops(model, shape) / fold if self.align > 1 else
                                    flops_per_image(task, mode, fold))  # model_map.json has the paper's widths
        model.eval()
        x = torch.randn(n, *shape)
        dtype = PRECISIONS[config.precision]
        self.reference = copy.deepcopy(model)  # fp32 on the CPU, for the logits check
        model = model.to(self.device, dtype)
        x = x.to(self.device, dtype)
        if self.backend in ("eager", "compile", "cudagraph") and config.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.x = x
        with torch.inference_mode():
            run = make_runner(model, x, self.backend, self.device, config.compile_mode, config.precision == "int8")
            if config.chunk == "auto":
                self.chunk = tune_chunk(run, x, self.device) if self.device.type == "cpu" else None
            elif config.chunk == "full":
                self.chunk = None
            else:
                self.chunk = int(config.chunk) if int(config.chunk) < n else None
            self.run = chunked(run, self.chunk)
            for _ in range(warmup):
                self.run(x)
        self.max_abs_error = check_logits(self.run, self.reference, x, config.precision)

    def trial(self, trial=0, iters=1, min_time=0.0):
        with torch.inference_mode():
            batches_per_sec = time_calls(lambda: self.run(self.x), self.device, iters, min_time)
        images_per_sec = batches_per_sec * self.images
        c = self.config
        return Measurement(self.key, c.task if c.model_file else get_task(c.task).name, c.mode, c.fold,
                           c.batch_size, self.backend,
                           c.precision, str(self.device), self.chunk or self.x.shape[0], trial,
                           images_per_sec, images_per_sec * self.flops_per_image, self.max_abs_error, self.align)




def timing_protocol(device, quick=False):
    """The measurement protocol per device: the paper's on CUDA (fp16, 100 warm-up and 10000 timed batches,
    10 trials); on the CPU a time-bounded one (fp32, 2 warm-up batches, trials of at least 1 s, 3 trials).
    `quick` is a smoke run: one short trial (on the CPU in chunks of 32 inputs)."""
    cuda = device.type == "cuda"
    protocol = {"precision": "fp16" if cuda else "fp32", "chunk": "auto"}
    if quick:
        return {**protocol, "trials": 1, "warmup": 10 if cuda else 1, "iters": 100 if cuda else 1,
                "min_time": 0.0 if cuda else 0.2, "chunk": "auto" if cuda else "32"}
    return {**protocol, "trials": 10 if cuda else 3, "warmup": 100 if cuda else 2, "iters": 10000 if cuda else 1,
            "min_time": 0.0 if cuda else 1.0}


def fill_protocol(args, device, quick=False):
    """Set every measurement flag left at None in `args` from `timing_protocol`; returns `args`."""
    for name, value in timing_protocol(device, quick).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def chunk_arg(text):
    """argparse type for --chunk: auto, full, or a positive number of inputs."""
    if text in ("auto", "full"):
        return text
    return str(positive_int(text))


def add_measurement_args(parser):
    """The flags of how to measure, shared by infer.py, the sweep and the benchmark (None: the protocol's)."""
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                        help="default auto: onnxruntime on the CPU (compile for bf16), compile on CUDA")
    parser.add_argument("--compile_mode", default="auto", choices=("auto",) + COMPILE_MODES,
                        help="torch.compile mode of --backend compile; default auto: "
                             + ", ".join(f"{mode} on {kind}" for kind, mode in DEFAULT_COMPILE_MODE.items()))
    parser.add_argument("--nchw", action="store_true",
                        help="eager/compile/cudagraph: keep NCHW tensors (default channels-last)")
    parser.add_argument("--precision", default=None, choices=tuple(PRECISIONS),
                        help="default fp16 on CUDA, fp32 on the CPU; bf16 runs on CUDA and on CPUs with bf16 "
                             "instructions (AVX-512 BF16, AMX) with --backend compile or eager; fp16 needs CUDA; int8 "
                             "runs on the CPU with --backend onnxruntime (static quantization calibrated on random "
                             "inputs: util/export.py --int8 quantizes a trained model on its images)")
    add_device_arg(parser)
    parser.add_argument("--chunk", type=chunk_arg, default=None,
                        help="inputs per chunk: a number, full (no chunks) or auto (tuned on the CPU, full on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up batches; default 100 on CUDA, 2 on the CPU")
    parser.add_argument("--iters", type=positive_int, default=None,
                        help="timed batches per trial at least; default 10000 on CUDA, 1 on the CPU")
    parser.add_argument("--min_time", type=float, default=None,
                        help="seconds per trial at least; default 0 on CUDA, 1.0 on the CPU")
    return parser


def add_user_model_args(parser):
    """--model_file and --input_shape: measure a user's CNN (and its FoldedCNNs) instead of a task's."""
    parser.add_argument("--model_file", metavar="FILE.py:FUNCTION", default=None,
                        help="your own CNN: FUNCTION() in FILE.py returns the original model (run as Python code); "
                             "folds > 1 measure its FoldedCNN (models.fold_cnn)")
    parser.add_argument("--input_shape", nargs=3, type=positive_int, metavar=("C", "H", "W"), default=None,
                        help="one image's shape for --model_file")


def interleaved_trials(benches, trials, iters, min_time, report=None):
    """{key: [images/sec per trial]} of `benches` ({key: Benchmark}) over `trials` interleaved trials (each trial
    runs every benchmark once, so that drift in the machine's speed hits all alike: util/measure/compare.py pairs
    them); `report(key, measurement)` sees every trial as it ends."""
    speeds = {key: [] for key in benches}
    for trial in range(trials):
        for key, bench in benches.items():
            measurement = bench.trial(trial, iters, min_time)
            speeds[key].append(measurement.images_per_sec)
            if report:
                report(key, measurement)
    return speeds


def interleaved_medians(benches, trials, iters, min_time, report=None):
    """{key: median images/sec} of interleaved_trials."""
    return medians(interleaved_trials(benches, trials, iters, min_time, report))


def compare_with_plain_eager(task, folds, batch_size, device, trials, min_time, precision="fp32", backend="auto"):
    """Images/sec per trial of plain eager PyTorch (original CNN, fp32, NCHW, whole batch) and the default path
    (`backend` at `precision`, chunks tuned) at f=1 and each of `folds`, trials interleaved so that drift in the
    machine's speed hits all alike. Returns ({variant: [images/sec per trial]}, the backend of the default path)."""
    path = dict(task=task, batch_size=batch_size, backend=backend, precision=precision, device=device)
    variants = {"plain eager": Config(**{**path, "backend": "eager", "precision": "fp32"}, mode="original", fold=1,
                                      chunk="full", channels_last=False),
                "default f=1": Config(**path, mode="original", fold=1)}
    variants.update({f"default f={f}": Config(**path, mode="folded", fold=f) for f in folds})
    benches = {name: Benchmark(config) for name, config in variants.items()}
    return interleaved_trials(benches, trials, 1, min_time), benches["default f=1"].backend


SWEEP_FAMILIES = ("game", "noscope")  # the paper's inference models; the CIFAR ResNet-18s on request


def sweep_models():
    """`{model name: (task, kind)}` for every model that can be measured, in registry order.

    kind "folded" covers the original (fold 1) and the FoldedCNNs; "efficientnet" the compound-scaled
    baseline, whose folds are phi.
    """
    tasks = all_tasks().values()
    models = {model_key(task): (task, "folded") for task in tasks}
    models.update({model_key(task, "efficientnet"): (task, "efficientnet")
                   for task in tasks if task.compound_scaling_baseline})
    return models


def default_models():
    return [name for name, (task, _) in sweep_models().items() if task.family in SWEEP_FAMILIES]


def resolve_models(names):
    """Model names for `names` (model names as in the CSV, or task names); ValueError on unknown ones."""
    models, resolved = sweep_models(), []
    for name in names:
        if name not in models:
            try:
                name = model_key(name)
            except ValueError:
                raise ValueError(f"unknown model {name!r}; choose from: {', '.join(models)}") from None
        resolved.append(name)
    return list(dict.fromkeys(resolved))


def configurations(models, folds, phis, batch_sizes):
    """(model name, task, mode, fold or phi, batch size) in sweep order."""
    table = sweep_models()
    for name in models:
        task, kind = table[name]
        for fold in (phis if kind == "efficientnet" else folds):
            mode = mode_of(fold, kind)
            for batch_size in batch_sizes:
                yield name, task, mode, fold, batch_size
