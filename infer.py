"""Measure the inference throughput of one model configuration (docs/protocol.md, section 5).

One configuration is a task, a mode (original / folded / efficientnet), a fold (phi for the
efficientnet baseline), a batch size in images, a precision, a device and a backend; util/measure/benchmark.py
says what each backend is and how a batch runs. Before timing, the backend's logits are checked
against eager fp32 PyTorch. Each trial prints one `key=value` line (or a JSON object with --json).

`--fold auto` measures f = 1..4 (or --folds) on this device with the chosen backend and precision,
5 trials interleaved, and names the fold to take: the fastest, with its speed-up over f=1 and that ratio's range
over the trials, or the smaller fold where two tie within that range. With `--precision int8` it measures fp32 (the same backend, ONNX
Runtime) beside it and says which precision is faster for this model here: int8 is not faster everywhere. `--align N` (beyond the paper) rounds every widened layer
of a FoldedCNN up to a multiple of N.

Your own CNN instead of a task's: `--model_file my_models.py:build --input_shape 3 64 64` (build()
returns the original model; f > 1 measures its FoldedCNN, made by models.fold_cnn), or `--from_run RUN` to take both
from a run that train.py --model_file trained.
"""
import argparse
import json
import statistics
from dataclasses import asdict

from config.tasks import task_names
from models import MODES, mode_of
from util.core.cli import add_align_arg, float_between, one_line_errors, positive_int, run_command
from util.core.device import pick_device
from util.measure.benchmark import (Benchmark, add_measurement_args, add_user_model_args, config_from_args,
                                    fill_timing, fill_user_model, interleaved_points, interleaved_trials)
from util.measure.compare import choose, choose_within, fold_choice, medians, precision_verdict
from util.measure.latency import add_latency_args, curve_batch_sizes


def fold_arg(text):
    """argparse type for --fold: a positive integer or auto."""
    return text if text == "auto" else positive_int(text)


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    parser.add_argument("task", nargs="?", choices=task_names(), metavar="TASK",
                        help="one of: " + ", ".join(task_names()) + " (or --model_file)")
    add_user_model_args(parser)
    parser.add_argument("--mode", choices=MODES, default="folded",
                        help="folded (fold 1 = the original CNN), original, or efficientnet (fold = phi); "
                             "default folded")
    parser.add_argument("--fold", type=fold_arg, default=1,
                        help="fold f, or phi for efficientnet, or auto: measure --folds and name the fold to take; "
                             "default 1")
    parser.add_argument("--folds", type=positive_int, nargs="+", default=[1, 2, 3, 4],
                        help="the folds --fold auto measures; default 1 2 3 4")
    add_align_arg(parser)
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    add_measurement_args(parser)
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="timed trials; default 1, and 5 with --fold auto (interleaved over the folds: a speed-up "
                             "is printed with its range over them, and folds within it tie)")
    parser.add_argument("--latency_ms", type=float_between(1e-3), default=None, metavar="L",
                        help="with --fold auto: time each fold's batches one by one, from one folded input doubling "
                             "up to --curve_max images (or until a median passes L), and name the fold and batch with the "
                             "most images/sec whose p99 latency is within L ms (exit 3 when nothing fits)")
    add_latency_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and random inputs")
    parser.add_argument("--json", action="store_true", help="print JSON objects instead of key=value lines")
    return parser


def config_for(args, fold, precision=None):
    mode = mode_of(fold) if args.model_file or args.fold == "auto" else args.mode
    return config_from_args(args, args.task or args.model_file, mode, fold, precision=precision or args.precision)


def fold_line(trials, bench, precision, batch_size):
    """The line naming the fold to take from `trials` ({fold: [images/sec per interleaved trial]}): the fastest,
    or the smaller of two that tie within the trials' spread (util/measure/compare.py's fold_choice)."""
    choice = fold_choice(trials)
    best, count = choice.fold, len(trials[choice.fold])
    line = (f"fold to take: f={best}" + (" (the original)" if best == 1 else "") + f" at {medians(trials)[best]:,.0f} "
            f"images/sec (median of {count} interleaved trial{'s' if count > 1 else ''}; {bench.backend}, {precision}, "
            f"{bench.device}, batch {batch_size})")
    if choice.says:
        line += "; " + choice.says
    if count < 2:
        line += "; one trial has no spread: --trials 5 to tell a speed-up from noise"
    return line


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        fill_user_model(args)
    if (args.task is None) == (args.model_file is None):
        parser.error("name a TASK or a --model_file, not both (--from_run RUN gives the --model_file of a run)")
    if args.fold == "auto" and args.mode != "folded":
        parser.error(f"--fold auto measures the original and its FoldedCNNs: drop --mode {args.mode}")
    if args.fold != "auto" and args.folds != parser.get_default("folds"):
        parser.error("--folds goes with --fold auto: add --fold auto, or drop --folds")
    if args.align > 1 and args.mode != "folded":
        parser.error(f"--align widens FoldedCNNs: drop it for --mode {args.mode}")
    if args.latency_ms is not None and args.fold != "auto":
        parser.error("--latency_ms chooses a fold and batch: add --fold auto")
    folds = sorted(set(args.folds)) if args.fold == "auto" else [args.fold]
    args.trials = args.trials or (5 if args.fold == "auto" else 1)
    if args.latency_ms is not None:
        return choose_within_latency(parser, args, folds)
    with one_line_errors(parser):
        fill_timing(args, pick_device(args.device))
        precisions = [args.precision] + (["fp32"] if args.fold == "auto" and args.precision == "int8" else [])
        benches = {(p, fold): Benchmark(config_for(args, fold, p), args.warmup, args.seed)
                   for fold in folds for p in precisions}

    trials = {key: [] for key in benches}

    def show(key, result):
        trials[key].append(result.images_per_sec)
        print(json.dumps(asdict(result)) if args.json else result.line(), flush=True)

    interleaved_trials(benches, args.trials, args.iters, args.min_time, show)
    if args.fold == "auto":
        for p in precisions:
            of_p = {f: t for (q, f), t in trials.items() if q == p}
            best = choose(of_p)
            bench = benches[(p, best)]
            summary = {"fold_to_take": best, "images_per_sec": medians(of_p), "trials": of_p,
                       "backend": bench.backend, "precision": p, "device": str(bench.device)}
            print(json.dumps(summary) if args.json else fold_line(of_p, bench, p, args.batch_size))
        if len(precisions) > 1:
            verdict = precision_verdict(trials)
            print(json.dumps({"precision_verdict": verdict}) if args.json else verdict)



def choose_within_latency(parser, args, folds):
    """--fold auto --latency_ms L: each fold's curve (util/measure/latency.py), its points interleaved trial by trial
    and cut where a median passes L, then the pick within L (compare.choose_within); exit 3 when nothing fits."""
    with one_line_errors(parser):
        fill_timing(args, pick_device(args.device))
    speeds, p99s = {}, {}

    def setup(point):
        fold, batch = point
        return Benchmark(config_from_args(args, args.task or args.model_file, mode_of(fold), fold, batch),
                         args.warmup, args.seed)

    def measure(bench, trial):
        return bench.latency_trial(trial, args.latency_batches, args.latency_seconds)

    points = [(fold, batch) for fold in folds for batch in curve_batch_sizes(fold, args.curve_max)]
    with one_line_errors(parser):
        for point, _, result in interleaved_points(points, args.trials, setup, measure, stop_ms=args.latency_ms):
            speeds.setdefault(point, []).append(result.images_per_sec)
            p99s.setdefault(point, []).append(result.latency.p99_ms)
            print(json.dumps(asdict(result)) if args.json else result.line(), flush=True)
    p99 = {point: statistics.median(values) for point, values in p99s.items()}
    choice = choose_within(speeds, p99, args.latency_ms)
    if choice is None:
        parser.exit(3, f"nothing fits within {args.latency_ms:g} ms: the smallest p99 measured is "
                       f"{min(p99.values()):.3g} ms\n")
    (fold, batch), count = choice.pick, len(speeds[choice.pick])
    gain = ("" if fold == 1 else "; no f=1 batch fits" if choice.gain is None else
            f"; {choice.gain.median:.2f}x f=1 at batch {choice.original[1]}, the best f=1 within it{choice.gain.spread()}")
    summary = {"latency_ms": args.latency_ms, "fold_to_take": fold, "batch_size": batch,
               "images_per_sec": statistics.median(speeds[choice.pick]), "p99_ms": p99[choice.pick],
               "original": choice.original, "gain": choice.gain and choice.gain.median}
    print(json.dumps(summary) if args.json else
          f"within {args.latency_ms:g} ms: f={fold} at batch {batch}, {summary['images_per_sec']:,.0f} images/sec "
          f"(p99 {summary['p99_ms']:.3g} ms, median of {count} interleaved trial{'s' if count > 1 else ''}){gain}; "
          "compute latency only: a folded model also waits for its f images")


if __name__ == "__main__":
    run_command(main)
