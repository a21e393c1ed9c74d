"""Which way of running a CNN is fastest here: eager (NCHW, channels-last) and torch.compile's modes.

For each task and fold, every variant is set up once (built, compiled, warmed up, its logits checked
against eager fp32), then the variants' trials are interleaved so that drift in the machine's speed
hits them alike. The table gives the median images/sec, each variant's speed over eager NCHW, and
the seconds its set-up took (compilation, autotuning): the figures behind DEFAULT_COMPILE_MODE and
the channels-last default in util/measure/benchmark.py.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a command: make the repository importable

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config.tasks import all_tasks  # noqa: E402
from util.core.cli import add_device_arg, add_out_arg, one_line_errors, out_paths, positive_int, print_text, run_command  # noqa: E402
from util.core.device import pick_device  # noqa: E402
from models import mode_of  # noqa: E402
from util.measure.benchmark import (COMPILE_MODES, PRECISIONS, SWEEP_FAMILIES, Benchmark, BackendError, Config,  # noqa: E402
                                    backend_problem, fill_protocol, interleaved_medians)
from util.measure.compare import speedups  # noqa: E402


def variants(modes, device_type):
    """{name: (backend, channels_last, compile mode)}: eager both layouts, a CUDA graph on CUDA, then compile
    channels-last per mode."""
    table = {"eager nchw": ("eager", False, "auto"), "eager channels-last": ("eager", True, "auto")}
    if device_type == "cuda":
        table["cudagraph channels-last"] = ("cudagraph", True, "auto")
    table.update({f"compile {mode}": ("compile", True, mode) for mode in modes})
    return table


def measure(task, fold, args, device, modes):
    """{variant: (median images/sec or None if it failed, set-up seconds, note)} for one task and fold, with the
    shared interleaving and timing protocol (util.measure.benchmark.interleaved_medians)."""
    torch._dynamo.reset()  # forget earlier configurations' graphs: each model class may hold only so many
    benches, results = {}, {}
    for name, (backend, channels_last, compile_mode) in variants(modes, device.type).items():
        config = Config(task=task, mode=mode_of(fold), fold=fold, batch_size=args.batch_size, backend=backend,
                        precision=args.precision, device=str(device), chunk="full", channels_last=channels_last,
                        compile_mode=compile_mode)
        start = time.perf_counter()
        try:
            benches[name] = Benchmark(config, args.warmup)
        except (BackendError, RuntimeError) as e:
            results[name] = (None, time.perf_counter() - start, str(e).splitlines()[0][:120])
            continue
        results[name] = (None, time.perf_counter() - start, "")
    for name, median in interleaved_medians(benches, args.trials, args.iters, args.min_time).items():
        results[name] = (median, results[name][1], "")
    return results


def measured(row):
    """{variant: median images/sec} of the variants of `row` that ran."""
    return {name: speed for name, (speed, _, _) in row.items() if speed is not None}


def table(results, names):
    """Markdown: one row per (task, fold), images/sec and speed over eager NCHW per variant, set-up seconds."""
    lines = ["| Task | f | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for (task, fold), row in results.items():
        over_nchw = speedups(measured(row), base="eager nchw")
        cells = []
        for name in names:
            speed, setup, note = row[name]
            if speed is None:
                cells.append(f"failed ({note})")
            else:
                ratio = f" ({over_nchw[name]:.2f}x)" if over_nchw else ""
                cells.append(f"{speed:,.0f}{ratio}, {setup:.0f} s")
        lines.append(f"| {task} | {fold} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", help="tasks; default: the 10 game and NoScope CNNs")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 4], help="folds; default 1 4")
    parser.add_argument("--modes", nargs="+", choices=COMPILE_MODES, default=None,
                        help="torch.compile modes to try; default all on CUDA, default on the CPU")
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
    problem = backend_problem("eager", device, args.precision)
    if problem:
        parser.exit(2, f"error: {problem}\n")
    modes = args.modes or (list(COMPILE_MODES) if device.type == "cuda" else ["default"])
    tasks = args.tasks or [t.name for t in all_tasks().values() if t.family in SWEEP_FAMILIES]
    known = [t.name for t in all_tasks().values()]
    unknown = [t for t in tasks if t not in known]
    if unknown:
        parser.exit(2, f"error: unknown task {unknown[0]!r}; choose from: {', '.join(known)}\n")

    results = {}
    for task, fold in tqdm([(t, f) for t in tasks for f in args.folds], desc="backends", unit="config",
                           file=sys.stderr, disable=not sys.stderr.isatty()):
        results[(task, fold)] = measure(task, fold, args, device, modes)
    names = list(variants(modes, device.type))
    lines = [f"Images/sec (speed over eager NCHW), set-up seconds; batch {args.batch_size}, {args.precision}, "
             f"{device}; median of {args.trials} interleaved trials of at least {args.iters} batches and "
             f"{args.min_time:g} s.", ""]
    lines += table(results, names)
    lines.append("")
    for name in names[1:]:
        ratios = [over[name] for over in (speedups(measured(row), base="eager nchw") for row in results.values())
                  if name in over]
        if ratios:
            lines.append(f"Median over configurations of {name} / eager nchw: {statistics.median(ratios):.2f}x "
                         f"({len(ratios)} configurations)")
    print_text(parser, lines, args.out and out_paths(args.out, ["md"])["md"])


if __name__ == "__main__":
    run_command(main)
