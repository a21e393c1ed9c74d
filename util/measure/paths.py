"""Which way of running a CNN is fastest on this machine: one comparison of inference paths, three questions.

    python3 util/compare_paths.py eager      # plain eager PyTorch against this project's default path (f=1, f=4)
    python3 util/compare_paths.py backends   # eager (NCHW, channels-last), CUDA graphs, torch.compile's modes,
                                             # or the --backends named (e.g. onnxruntime openvino)
    python3 util/compare_paths.py align      # --align 8/16 widths against the paper's at f = 2, 3

Per task (and fold), every path is set up once (built, compiled, warmed up, its logits checked against eager fp32:
util/measure/benchmark.py), then the paths' trials are interleaved so that drift in the machine's speed hits them
alike (util/measure/compare.py turns them into speed-ups with their range). Each prints a Markdown table (--out
writes it too); `PATH --help` lists a comparison's own flags. util/benchmark_eager.py, benchmark_backends.py and
benchmark_align.py, the names before 2026-12-07, run the same comparisons. This module is the library behind those
commands (nothing here is a command itself).

  eager     plain eager is what a user would write: the original CNN, batch 1024, fp32, NCHW, one call per batch. The
            default path is infer.py's (on the CPU: ONNX Runtime in cache-sized chunks), or the --backend and
            --precision given. Both run the original CNN, and the default path the FoldedCNN at each of --folds.
  backends  the figures behind DEFAULT_COMPILE_MODE and the channels-last default in util/runtime/backends.py: each
            variant's speed over the first, with the seconds its set-up took (compilation, autotuning).
  align     every widened layer rounded up to a multiple of N (`--align N`, beyond the paper) against the paper's
            int(c*sqrt(f)): speed over the paper's widths at the same fold and over f=1, FLOPs per image, the first
            layer's width.
"""
import argparse
import statistics
import sys
import time

import torch
from tqdm import tqdm

from config.tasks import all_tasks
from models import build_model, mode_of
from util.core.cli import add_device_arg, add_out_arg, markdown_table, one_line_errors, out_paths, positive_int, print_text
from util.core.device import cpu_name, pick_device
from util.measure.benchmark import (SWEEP_FAMILIES, Benchmark, Config, chunk_arg, compare_with_plain_eager,
                                    fill_timing, interleaved_trials)
from util.measure.compare import medians, ratio
from util.runtime.backends import BACKENDS, COMPILE_MODES, PRECISIONS, BackendError, backend_problem


def ratio_cell(trials, name, base):
    """'1.23x, 1.10-1.30': the speed of `name` over `base` with its range over the interleaved trials ('1.00x' for
    the base itself, '' where either did not run)."""
    r = ratio(trials, name, base)
    if r is None:
        return ""
    return "1.00x" if name == base else f"{r.median:.2f}x" + (f", {r.low:.2f}-{r.high:.2f}" if r.trials > 1 else "")


def speed_cell(trials, name, base, setup=None):
    """'12,345 (1.23x, 1.10-1.30), 3 s': the median images/sec of `name`, ratio_cell over `base`, and the set-up
    seconds if given."""
    over = ratio_cell(trials, name, base)
    return (f"{statistics.median(trials[name]):,.0f}" + (f" ({over})" if over else "")
            + ("" if setup is None else f", {setup:.0f} s"))


def median_ratios(results, names, base):
    """'Median over configurations of X / base: 1.23x (N configurations)' for each of `names` but the base."""
    lines = []
    for name in names:
        ratios = [r.median for r in (ratio(trials, name, base) for trials in results) if r]
        if name != base and ratios:
            lines.append(f"Median over configurations of {name} / {base}: {statistics.median(ratios):.2f}x "
                         f"({len(ratios)} configurations; each the median of its interleaved trials)")
    return lines


def eager(args, tasks, device):
    """Plain eager against the default path, per task: the table's lines."""
    results = {}
    for task in progress(tasks, "eager"):
        results[task], backend = compare_with_plain_eager(task, args.folds, args.batch_size, str(device), args.trials,
                                                          args.min_time, args.precision, args.backend)
    names = list(next(iter(results.values())))
    lines = [f"Images/sec (speed over plain eager: median and range of the per-trial ratios), batch {args.batch_size}, "
             f"{device}; plain eager: fp32, NCHW, whole batch; default path: {backend}, {args.precision}, chunks "
             f"tuned; median of {args.trials} interleaved trials.", ""]
    lines += markdown_table(["Model"] + names, [[task] + [speed_cell(trials, n, "plain eager") for n in names]
                                                for task, trials in results.items()])
    lines += [""] + median_ratios(results.values(), names, "plain eager")
    for n in names[2:]:
        wins = sum(medians(trials)[n] > medians(trials)["default f=1"] for trials in results.values())
        lines.append(f"{n} beats default f=1 on {wins} of {len(results)} models")
    return lines


def backend_variants(modes, device_type, backends=None):
    """{name: (backend, channels_last, compile mode)}: each of `backends` as it runs by default, or else eager both
    layouts, a CUDA graph on CUDA, then compile channels-last per mode."""
    if backends:
        return {backend: (backend, True, "auto") for backend in backends}
    table = {"eager nchw": ("eager", False, "auto"), "eager channels-last": ("eager", True, "auto")}
    if device_type == "cuda":
        table["cudagraph channels-last"] = ("cudagraph", True, "auto")
    table.update({f"compile {mode}": ("compile", True, mode) for mode in modes})
    return table


def backends(args, tasks, device):
    """Every variant per task and fold: the table's lines; a variant that cannot run here says why in its cell."""
    modes = args.modes or (list(COMPILE_MODES) if device.type == "cuda" else ["default"])
    variants = backend_variants(modes, device.type, args.backends)
    names = list(variants)
    problem = backend_problem(variants[names[0]][0], device, args.precision)
    if problem:
        raise ValueError(problem)
    rows, everything = [], []
    for task, fold in progress([(t, f) for t in tasks for f in args.folds], "backends"):
        torch._dynamo.reset()  # forget earlier configurations' graphs: each model class may hold only so many
        benches, setup, failed = {}, {}, {}
        for name, (backend, channels_last, compile_mode) in variants.items():
            config = Config(task=task, mode=mode_of(fold), fold=fold, batch_size=args.batch_size, backend=backend,
                            precision=args.precision, device=str(device), chunk=args.chunk,
                            channels_last=channels_last, compile_mode=compile_mode)
            start = time.perf_counter()
            try:
                benches[name] = Benchmark(config, args.warmup)
            except (BackendError, RuntimeError) as e:
                failed[name] = str(e).splitlines()[0][:120]
            setup[name] = time.perf_counter() - start
        trials = interleaved_trials(benches, args.trials, args.iters, args.min_time)
        everything.append(trials)
        rows.append([task, fold] + [f"failed ({failed[n]})" if n in failed else speed_cell(trials, n, names[0], setup[n])
                                    for n in names])
    lines = [f"Images/sec (speed over {names[0]}: median and range of the per-trial ratios), set-up seconds; "
             f"batch {args.batch_size}, {args.precision}, {device}, chunk {args.chunk}; median of {args.trials} "
             f"interleaved trials of at least {args.iters} batches and {args.min_time:g} s.", ""]
    return lines + markdown_table(["Task", "f"] + names, rows) + [""] + median_ratios(everything, names, names[0])


def first_width(task, fold, align):
    model, _ = build_model(task, fold, align=align)
    return next(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def align(args, tasks, device):
    """f=1 and every (fold, align) per task: the table's lines."""
    aligns = [1] + [a for a in args.aligns if a != 1]
    rows, backend = [], None
    for task in progress(tasks, "aligned widths"):
        path = dict(task=task, batch_size=args.batch_size, precision=args.precision, device=str(device))
        configs = {(1, 1): Config(**path, mode="original", fold=1)}
        configs.update({(f, a): Config(**path, mode="folded", fold=f, align=a) for f in args.folds for a in aligns})
        benches = {key: Benchmark(config, args.warmup) for key, config in configs.items()}
        trials, backend = interleaved_trials(benches, args.trials, args.iters, args.min_time), benches[(1, 1)].backend
        for f, a in benches:
            rows.append([task, f, "-" if f == 1 else "paper" if a == 1 else a, first_width(task, f, a),
                         f"{benches[(f, a)].flops_per_image / 1e6:.2f}", f"{statistics.median(trials[(f, a)]):,.0f}",
                         "-" if f == 1 else ratio_cell(trials, (f, a), (f, 1)), ratio_cell(trials, (f, a), (1, 1))])
    where = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    return [f"# Aligned widths against the paper's ({where}, {backend}, {args.precision}, batch {args.batch_size})", "",
            f"Command: `{args.command}`. Median images/sec of "
            f"{args.trials} interleaved trials; speed-ups: median and range of the per-trial ratios; FLOPs per image "
            "counted from the model (MFLOPs).", ""] + markdown_table(
        ["task", "f", "align", "first width", "MFLOPs/image", "images/sec", "vs paper widths", "vs f=1"], rows)


def progress(items, desc):
    return tqdm(items, desc=desc, unit="config", file=sys.stderr, disable=not sys.stderr.isatty())


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tasks", nargs="+", choices=list(all_tasks()), metavar="TASK",
                        help="default: the 10 game and NoScope CNNs")
    common.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    common.add_argument("--trials", type=positive_int, default=3, help="interleaved trials; default 3")
    common.add_argument("--min_time", type=float, default=None,
                        help="seconds per trial at least; default the protocol's (1.0 on the CPU, 0 on CUDA)")
    common.add_argument("--iters", type=positive_int, default=None,
                        help="batches per trial at least; default the protocol's (1 on the CPU, 10000 on CUDA)")
    common.add_argument("--warmup", type=int, default=None,
                        help="warm-up batches; default the protocol's (2 on the CPU, 100 on CUDA)")
    common.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                        help="default: the protocol's (fp32 on the CPU, fp16 on CUDA; eager's plain path stays fp32)")
    add_device_arg(common)
    add_out_arg(common, ["md"])
    paths = parser.add_subparsers(dest="path", required=True, metavar="{eager,backends,align}")
    one = paths.add_parser("eager", parents=[common], help="plain eager PyTorch against the default path")
    one.add_argument("--folds", nargs="+", type=positive_int, default=[4], help="folds of the default path; default 4")
    one.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                     help="backend of the default path; default auto (the measured fastest for the precision)")
    one.set_defaults(measure=eager, precision="fp32", min_time=1.0)
    two = paths.add_parser("backends", parents=[common], help="eager layouts, CUDA graphs, torch.compile's modes, "
                                                            "or --backends")
    two.add_argument("--folds", nargs="+", type=positive_int, default=[1, 4], help="folds; default 1 4")
    two.add_argument("--modes", nargs="+", choices=COMPILE_MODES, default=None,
                     help="torch.compile modes to try; default all on CUDA, default on the CPU")
    two.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                     help="compare these backends instead (each as it runs by default; the first is the base), "
                          "e.g. onnxruntime openvino with --precision int8 --chunk auto")
    two.add_argument("--chunk", type=chunk_arg, default="full",
                     help="inputs per chunk: full (default: the whole batch), a number, or auto (tuned per variant "
                          "during its set-up, as the inference protocol does on the CPU)")
    two.set_defaults(measure=backends)
    three = paths.add_parser("align", parents=[common], help="--align 8/16 widths against the paper's")
    three.add_argument("--folds", nargs="+", type=positive_int, default=[2, 3], help="default 2 3")
    three.add_argument("--aligns", nargs="+", type=positive_int, default=[8, 16],
                       help="alignments compared with the paper's widths; default 8 16")
    three.set_defaults(measure=align)
    return parser


def main(argv=None):
    parser = get_args_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(argv)
    args.command = "python3 util/compare_paths.py " + " ".join(argv)
    if args.path == "backends" and args.backends and args.modes:
        parser.error("--modes picks torch.compile's variants, --backends replaces them: give one of the two")
    with one_line_errors(parser):
        device = pick_device(args.device)
        fill_timing(args, device)
        tasks = args.tasks or [t.name for t in all_tasks().values() if t.family in SWEEP_FAMILIES]
        lines = args.measure(args, tasks, device)
    print_text(parser, lines, args.out and out_paths(args.out, ["md"])["md"])
