"""Inference: timing and chunking, and the benchmark of one configuration.

One configuration is a task, a mode (original / folded / efficientnet), a fold (phi for the
efficientnet baseline), a batch size in images, a precision, a device and a backend (util/runtime/backends.py says
what each backend is and which can run here). A FoldedCNN runs `batch // f` folded inputs, each holding f images;
throughput counts images.

On the CPU every backend runs a batch in cache-sized chunks (tuned during warm-up by default): the
batch of 1024 images goes in and 1024 images' logits come out, but the activations of a chunk stay
in the CPU caches instead of streaming 100s of MB through memory per layer.

Before timing, the backend's logits are compared with eager PyTorch in fp32 on the same inputs, so
a fast but wrong backend cannot report a number.
"""
import copy
import time
from dataclasses import asdict, dataclass

import torch

from config.tasks import all_tasks, get_task
from models import build_model, mode_of, model_key
from models.flops import count_model_flops, flops_per_image
from models.user import model_key as user_model_key, user_classifier
from models.fold import check_align, check_fold
from util.core.cli import add_device_arg, positive_int
from util.core.device import pick_device
from util.measure.compare import medians
from util.measure.latency import MAX_SECONDS, MIN_BATCHES, Latency, latency_of, time_each_batch
from util.runtime.backends import (BACKENDS, CHUNK_CANDIDATES, COMPILE_MODES, DEFAULT_COMPILE_MODE, PRECISIONS,
                                   check_logits, chunked, make_runner, resolve_backend)
from util.train.checkpoint import read_checkpoint


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


def inputs_per_batch(batch_size, fold, mode):
    """Inputs in one batch of `batch_size` images: a folded input holds f images."""
    per_input = fold if mode == "folded" else 1
    if batch_size < per_input:
        raise ValueError(f"batch size {batch_size} is smaller than the fold {fold}: "
                         f"use a batch size of at least {per_input} images")
    return batch_size // per_input


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
    latency: Latency | None = None  # each batch timed on its own (latency_trial); None: a throughput trial

    def line(self):
        """One machine-readable `key=value` line."""
        fields = {k: v for k, v in asdict(self).items() if k != "latency"}
        if self.latency:
            fields.update({f"latency_{k}": v for k, v in asdict(self.latency).items() if k != "images_per_sec"})
        return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


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
        """A throughput trial: batches run back to back for at least `iters` batches and `min_time` seconds."""
        with torch.inference_mode():
            batches_per_sec = time_calls(lambda: self.run(self.x), self.device, iters, min_time)
        return self.measurement(trial, batches_per_sec * self.images)

    def latency_trial(self, trial=0, min_batches=MIN_BATCHES, max_seconds=MAX_SECONDS):
        """A latency trial (util/measure/latency.py): each batch timed on its own, synchronised; its images/sec are
        those batches'."""
        with torch.inference_mode():
            seconds = time_each_batch(lambda: self.run(self.x), lambda: synchronize(self.device), min_batches,
                                      max_seconds)
        latency = latency_of(seconds, self.images)
        return self.measurement(trial, latency.images_per_sec, latency)

    def measurement(self, trial, images_per_sec, latency=None):
        c = self.config
        return Measurement(self.key, c.task if c.model_file else get_task(c.task).name, c.mode, c.fold,
                           c.batch_size, self.backend,
                           c.precision, str(self.device), self.chunk or self.x.shape[0], trial,
                           images_per_sec, images_per_sec * self.flops_per_image, self.max_abs_error, self.align,
                           latency)


def timing_settings(device, quick=False):
    """The timing settings per device (docs/protocol.md's "inference protocol"): the paper's on CUDA (fp16, 100 warm-up and 10000 timed batches,
    10 trials); on the CPU a time-bounded one (fp32, 2 warm-up batches, trials of at least 1 s, 3 trials).
    `quick` is a smoke run: one short trial (on the CPU in chunks of 32 inputs)."""
    cuda = device.type == "cuda"
    common = {"precision": "fp16" if cuda else "fp32", "chunk": "auto"}
    if quick:
        return {**common, "trials": 1, "warmup": 10 if cuda else 1, "iters": 100 if cuda else 1,
                "min_time": 0.0 if cuda else 0.2, "chunk": "auto" if cuda else "32"}
    return {**common, "trials": 10 if cuda else 3, "warmup": 100 if cuda else 2, "iters": 10000 if cuda else 1,
            "min_time": 0.0 if cuda else 1.0}


def fill_timing(args, device, quick=False):
    """Set every measurement flag left at None in `args` from `timing_settings`; returns `args`."""
    for name, value in timing_settings(device, quick).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def chunk_arg(text):
    """argparse type for --chunk: auto, full, or a positive number of inputs."""
    if text in ("auto", "full"):
        return text
    return str(positive_int(text))


def add_measurement_args(parser):
    """The flags of how to measure, shared by infer.py, the sweep and the benchmark (None: timing_settings')."""
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                        help="default auto: onnxruntime on the CPU (compile for bf16; openvino for int8 where the CPU "
                             "has VNNI), compile on CUDA")
    parser.add_argument("--compile_mode", default="auto", choices=("auto",) + COMPILE_MODES,
                        help="torch.compile mode of --backend compile; default auto: "
                             + ", ".join(f"{mode} on {kind}" for kind, mode in DEFAULT_COMPILE_MODE.items()))
    parser.add_argument("--nchw", action="store_true",
                        help="eager/compile/cudagraph: keep NCHW tensors (default channels-last)")
    parser.add_argument("--precision", default=None, choices=tuple(PRECISIONS),
                        help="default fp16 on CUDA, fp32 on the CPU; bf16 runs on CUDA and on CPUs with bf16 "
                             "instructions (AVX-512 BF16, AMX) with --backend compile or eager; fp16 needs CUDA; int8 "
                             "runs on the CPU with --backend onnxruntime or openvino (ONNX Runtime's static "
                             "quantization calibrated on random inputs: util/export.py --int8 quantizes a trained "
                             "model on its images)")
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
    parser.add_argument("--from_run", metavar="RUN", default=None,
                        help="instead of --model_file and --input_shape: the ones recorded in a run of your CNN "
                             "(its directory or a .pth that train.py --model_file wrote)")


def fill_user_model(args):
    """--from_run: set args.model_file and args.input_shape from the run's checkpoint (a one-line ValueError if it is
    not a run of a user's CNN, or if they are also given)."""
    if not getattr(args, "from_run", None):
        return
    if args.model_file or args.input_shape:
        raise ValueError("--from_run reads --model_file and --input_shape from the run: give one or the others")
    recorded = read_checkpoint(args.from_run, what="--from_run", fix="pass a run of train.py --model_file").get(
        "model_args", {})
    if "model_file" not in recorded:
        raise ValueError(f"--from_run {args.from_run} is not a run of your own CNN (it was trained with no "
                         "--model_file): name a task instead, or pass a run of train.py --model_file")
    args.model_file, args.input_shape = recorded["model_file"], list(recorded["input_shape"])


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


def interleaved_points(points, trials, setup, measure, skip=None, stop_ms=None, stopped=None):
    """Yield (point, trial, Measurement) over `trials` trials of `points` ((fold, batch size) keys), trial by trial,
    the smaller batches first in each (then the folds). A point is set up by `setup(point)` (a Benchmark, or None where
    it cannot be: left out) when first measured, and timed by `measure(bench, trial)`; `skip(point, trial)` says a
    trial is measured already. With `stop_ms`, a fold's larger batches are left out once one of its batches' median
    latency passes it on that batch's first trial (`stopped`: {fold: such a batch} known already): larger batches
    only take longer."""
    benches, stopped = {}, dict(stopped or {})
    for trial in range(trials):
        for point in sorted(points, key=lambda p: (p[1], p[0])):
            fold, batch = point
            if (skip and skip(point, trial)) or batch > stopped.get(fold, batch):
                continue
            first = point not in benches
            if first:
                benches[point] = setup(point)
            if benches[point] is None:
                continue
            measured = measure(benches[point], trial)
            if first and stop_ms is not None and measured.latency and measured.latency.p50_ms > stop_ms:
                stopped[fold] = min(batch, stopped.get(fold, batch))  # decided on a point's first trial, once
            yield point, trial, measured


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
