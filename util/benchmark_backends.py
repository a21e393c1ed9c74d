"""Which way of running a CNN is fastest here: eager (NCHW, channels-last) and torch.compile's modes, or the backends
named with --backends (say ONNX Runtime against OpenVINO, in fp32 or int8).

For each task and fold, every variant is set up once (built, compiled, warmed up, its logits checked
against eager fp32), then the variants' trials are interleaved so that drift in the machine's speed
hits them alike. The table gives the median images/sec, each variant's speed over the first variant (eager NCHW by
default) with that ratio's range over the trials, and the seconds its set-up took (compilation, autotuning): the
figures behind DEFAULT_COMPILE_MODE and the channels-last default in util/runtime/backends.py.
"""
import argparse
import statistics
import sys
import time

import torch
from tqdm import tqdm

from config.tasks import all_tasks
from util.core.cli import add_device_arg, add_out_arg, one_line_errors, out_paths, positive_int, print_text, run_command
from util.core.device import pick_device
from models import mode_of
from util.measure.benchmark import SWEEP_FAMILIES, Benchmark, Config, chunk_arg, fill_protocol, interleaved_trials
from util.runtime.backends import BACKENDS, COMPILE_MODES, PRECISIONS, BackendError, backend_problem
from util.measure.compare import ratio


def variants(modes, device_type, backends=None):
    """{name: (backend, channels_last, compile mode)}: each of `backends` as it runs by default, or else eager both
    layouts, a CUDA graph on CUDA, then compile channels-last per mode."""
    if backends:
        return {backend: (backend, True, "auto") for backend in backends}
    table = {"eager nchw": ("eager", False, "auto"), "eager channels-last": ("eager", True, "auto")}
    if device_type == "cuda":
        table["cudagraph channels-last"] = ("cudagraph", True, "auto")
    table.update({f"compile {mode}": ("compile", True, mode) for mode in modes})
    return table


def measure(task, fold, args, device, modes):
    """{variant: (images/sec per trial or None if it failed, set-up seconds, note)} for one task and fold, with the
    shared interleaving and timing protocol (util.measure.benchmark.interleaved_trials)."""
    torch._dynamo.reset()  # forget earlier configurations' graphs: each model class may hold only so many
    benches, results = {}, {}
    for name, (backend, channels_last, compile_mode) in variants(modes, device.type, args.backends).items():
        config = Config(task=task, mode=mode_of(fold), fold=fold, batch_size=args.batch_size, backend=backend,
                        precision=args.precision, device=str(device), chunk=args.chunk, channels_last=channels_last,
                        compile_mode=compile_mode)
        start = time.perf_counter()
        try:
            benches[name] = Benchmark(config, args.warmup)
        except (BackendError, RuntimeError) as e:
            results[name] = (None, time.perf_counter() - start, str(e).splitlines()[0][:120])
            continue
        results[name] = (None, time.perf_counter() - start, "")
    for name, speeds in interleaved_trials(benches, args.trials, args.iters, args.min_time).items():
        results[name] = (speeds, results[name][1], "")
    return results


def measured(row):
    """{variant: images/sec per trial} of the variants of `row` that ran."""
    return {name: speeds for name, (speeds, _, _) in row.items() if speeds is not None}


def table(results, names):
    """Markdown: one row per (task, fold); per variant its median images/sec, its speed over the first variant with
    the range over the trials, and its set-up seconds."""
    lines = ["| Task | f | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for (task, fold), row in results.items():
        trials = measured(row)
        cells = []
        for name in names:
            speeds, setup, note = row[name]
            if speeds is None:
                cells.append(f"failed ({note})")
                continue
            r = ratio(trials, name, names[0])
            if name == names[0] or r is None:
                over = " (1.00x)" if r else ""
            else:
                over = f" ({r.median:.2f}x" + (f", {r.low:.2f}-{r.high:.2f}" if r.trials > 1 else "") + ")"
            cells.append(f"{statistics.median(speeds):,.0f}{over}, {setup:.0f} s")
        lines.append(f"| {task} | {fold} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", help="tasks; default: the 10 game and NoScope CNNs")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 4], help="folds; default 1 4")
    parser.add_argument("--modes", nargs="+", choices=COMPILE_MODES, default=None,
                        help="torch.compile modes to try; default all on CUDA, default on the CPU")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="compare these backends instead (each as it runs by default; the first is the base), "
                             "e.g. onnxruntime openvino with --precision int8 --chunk auto")
    parser.add_argument("--chunk", type=chunk_arg, default="full",
                        help="inputs per chunk: full (default: the whole batch), a number, or auto (tuned per variant "
                             "during its set-up, as the inference protocol does on the CPU)")
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                        help="default: the protocol's (fp16 on CUDA, fp32 on the CPU); bf16 on CPUs with bf16 "
                             "instructions")
    parser.add_argument("--trials", type=positive_int, default=3, help="interleaved trials; default 3")
    parser.add_argument("--iters", type=positive_int, default=None,
                        help="batches per trial at least; default 10000 on CUDA, 1 on the CPU (the protocol's)")
    parser.add_argument("--min_time", type=float, default=None,
                        help="seconds per trial at least; default 0 on CUDA, 1.0 on the CPU (the protocol's)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up batches; default 100 on CUDA, 2 on the CPU (the protocol's)")
    add_device_arg(parser)
    add_out_arg(parser, ["md"])
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        device = pick_device(args.device)
    fill_protocol(args, device)
    if args.backends and args.modes:
        parser.error("--modes picks torch.compile's variants, --backends replaces them: give one of the two")
    modes = args.modes or (list(COMPILE_MODES) if device.type == "cuda" else ["default"])
    table_of = variants(modes, device.type, args.backends)
    names = list(table_of)
    problem = backend_problem(table_of[names[0]][0], device, args.precision)
    if problem:
        parser.exit(2, f"error: {problem}\n")
    tasks = args.tasks or [t.name for t in all_tasks().values() if t.family in SWEEP_FAMILIES]
    known = [t.name for t in all_tasks().values()]
    unknown = [t for t in tasks if t not in known]
    if unknown:
        parser.exit(2, f"error: unknown task {unknown[0]!r}; choose from: {', '.join(known)}\n")

    results = {}
    for task, fold in tqdm([(t, f) for t in tasks for f in args.folds], desc="backends", unit="config",
                           file=sys.stderr, disable=not sys.stderr.isatty()):
        results[(task, fold)] = measure(task, fold, args, device, modes)
    lines = [f"Images/sec (speed over {names[0]}: median and range of the per-trial ratios), set-up seconds; "
             f"batch {args.batch_size}, {args.precision}, {device}, chunk {args.chunk}; median of {args.trials} "
             f"interleaved trials of at least {args.iters} batches and {args.min_time:g} s.", ""]
    lines += table(results, names)
    lines.append("")
    for name in names[1:]:
        ratios = [r.median for r in (ratio(measured(row), name, names[0]) for row in results.values()) if r]
        if ratios:
            lines.append(f"Median over configurations of {name} / {names[0]}: {statistics.median(ratios):.2f}x "
                         f"({len(ratios)} configurations; each the median of its interleaved trials)")
    print_text(parser, lines, args.out and out_paths(args.out, ["md"])["md"])


if __name__ == "__main__":
    run_command(main)
