"""The inference sweep behind ./run_inference.sh: every model x fold x batch size x trial, one CSV row each.

Rows are `Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec,Backend,Precision,Device,Chunk,Align,Timing` and
three latency columns (util/measure/results_csv.py). A model's folds are measured interleaved (trial t of every fold, then trial t+1), so
that its speed-ups come with their spread over trials. Each row is printed and appended as soon as it is measured,
flushed to disk, so a kill loses at most the row being written. Re-running the same command resumes: trials
already in the CSV are skipped.

Timing (util/measure/benchmark.py): on CUDA the paper's (fp16, 100 warm-up and 10000 timed batches, 10
trials); on the CPU a time-bounded one (fp32, 2 warm-up batches, trials of at least 1 s, 3 trials)
so the default sweep of the 14 models finishes in well under 30 minutes on 2 cores; --quick is a
smoke run (its rows say Timing quick, and every reader of the CSV says so). --latency times each batch on its own
(median and 99th percentile per trial); --curve measures the throughput-latency curve (util/measure/latency.py). The machine's measured peak (util/measure/machine.py) is written to <name>-report/machine.json
beside the CSV, where util/inference_report.py also writes the report.
"""
import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from models import mode_of
from models.user import checked_model, model_key as user_model_key
from util.core.cli import add_align_arg, positive_int, run_command
from util.core.device import pick_device
from util.core.files import append_line, filesystem_failure, write_json_atomic
from util.measure.benchmark import (Benchmark, add_measurement_args, add_user_model_args, config_from_args,
                                    configurations, default_models, fill_timing, fill_user_model, interleaved_points,
                                    resolve_models)
from util.runtime.backends import BackendError, resolve_backend
from util.measure.compare import fold_choice
from util.measure.machine import measure_peak
from util.measure.latency import BOUNDS_MS, CURVE_STOP_SECONDS, add_latency_args, curve_batch_sizes
from util.measure.results_csv import (HEADER, MODE_NAMES, fold_trials, format_row, load, machine_file,
                                      measurement_row, open_results, read_rows, trial_note)


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(prog="run_inference.sh", description=__doc__, add_help=add_help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="results CSV to append to (created with a header if missing)")
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="models (CSV names such as noscope_coral or efficientnet-game_sot/timer3, or task "
                             "names); default: the 14 game, NoScope and baseline models")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=None,
                        help="folds of the game and NoScope CNNs (1 = the original CNN); default 1 2 3 4 "
                             "(1 4 with --quick)")
    parser.add_argument("--phis", nargs="+", type=positive_int, default=[1, 2],
                        help="compound-scaling coefficients of the baselines (1 = the original); default 1 2")
    parser.add_argument("--batch_sizes", nargs="+", type=positive_int, default=[1024],
                        help="images per batch; default 1024")
    parser.add_argument("--latency", action="store_true",
                        help="time each batch on its own (synchronised on CUDA): the CSV's latency columns get its "
                             "median and 99th percentile, and its Throughput is what those batches give (Timing "
                             "latency); at least --latency_batches batches a trial, or as many as --latency_seconds "
                             "allow and at least 20")
    parser.add_argument("--curve", action="store_true",
                        help="the throughput-latency curve (implies --latency): per fold, batches of f images (one "
                             "folded input), doubling up to --curve_max, until a batch's median latency passes 1 s; every "
                             "(fold, batch) point of a model interleaved trial by trial (replaces --batch_sizes)")
    add_latency_args(parser)
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="trials per configuration; default 10 on CUDA, 3 on the CPU")
    add_measurement_args(parser)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: folds 1 and 4, one short trial each (on the CPU in chunks of 32 inputs)")
    parser.add_argument("--no_peak", action="store_true", help="do not measure the machine's peak")
    add_align_arg(parser, " (the CSV's Align column)")
    add_user_model_args(parser)
    return parser


def batch_sizes_of(args, mode, fold):
    """--batch_sizes, or with --curve the curve's batch sizes of this fold (latency.curve_batch_sizes)."""
    return curve_batch_sizes(fold if mode == "folded" else 1, args.curve_max) if args.curve else args.batch_sizes


def inference_configs(args, models):
    """(model name, task name, mode, fold or phi, batch size) of every configuration: the registry's models, or the
    folds of --model_file's."""
    if args.model_file:
        name = user_model_key(args.model_file)
        return [(name, args.model_file, mode_of(fold), fold, batch_size)
                for fold in args.folds for batch_size in batch_sizes_of(args, mode_of(fold), fold)]
    return [(name, task.name, mode, fold, batch_size)
            for name, task, mode, fold, _ in configurations(models, args.folds, args.phis, [None])
            for batch_size in batch_sizes_of(args, mode, fold)]


def todo_list(args, configs, backend, device, done, timing="full"):
    """The configurations with trials still to measure: (name, task, mode, fold, batch size, missing trials)."""
    todo = []
    for name, task, mode, fold, batch_size in configs:
        align = args.align if mode == "folded" else 1  # the original and the baselines keep their widths
        keys = [(name, str(t), str(fold), str(batch_size), MODE_NAMES[mode], backend, args.precision, str(device),
                 str(align), timing) for t in range(args.trials)]
        missing = [t for t, key in enumerate(keys) if key not in done]
        if missing:
            todo.append((name, task, mode, fold, batch_size, missing))
    return todo


def fastest_folds(csv_path, names, batch_sizes, backend, precision, device, align, timing):
    """'model f=4 (f=4 at 1.23x f=1 (range ...))' or 'model f=1 (f=4 and f=1 tie (ratio ...): the smaller fold is
    taken)' for each FoldedCNN model in `names` measured in the CSV at two folds or more at this backend, precision,
    device, align and timing: the fold to take and what the trials say of it (compare.fold_choice), per batch size."""
    frame = load(csv_path)
    frame = frame[(frame["Backend"] == backend) & (frame["Precision"] == precision) & (frame["Device"] == str(device))
                  & frame["Mode"].isin(["Original", "Folded"]) & frame["Model"].isin(names)
                  & frame["Batch Size"].isin(batch_sizes) & ((frame["Align"] == align) | (frame["Fold"] == 1))
                  & (frame["Timing"] == timing)]
    found = []
    for (name, batch), part in frame.groupby(["Model", "Batch Size"], sort=False):
        trials = fold_trials(part, name)
        if len(trials) < 2:
            continue
        choice = fold_choice(trials)
        said = f"{name} f={choice.fold}" + (f" ({choice.says})" if choice.says else "")
        found.append(said + (f" at batch {batch}" if len(batch_sizes) > 1 else ""))
    return found, trial_note(frame)


def measure_interleaved(args, todo, backend, device, timing, stopped=None):
    """Measure `todo` (todo_list), a model's folds interleaved at each batch size (with --curve: all its points),
    appending each row as it ends; returns (configurations that could not be measured, trials measured). With
    --curve a fold's larger batches are left out once one of its batches' median latency passes CURVE_STOP_SECONDS
    (`stopped`: {(name, fold): that batch}, from the CSV on resume)."""
    groups = {}
    for entry in todo:
        groups.setdefault((entry[0], None if args.curve else entry[4]), []).append(entry)
    failures, measured = [], 0
    for (name, _), entries in tqdm(groups.items(), desc="inference sweep", unit="model",
                                   file=sys.stderr, disable=not sys.stderr.isatty()):
        torch._dynamo.reset()  # forget the last model's graphs: each model class may hold only so many
        points = {(fold, batch_size): (task, mode, missing) for _, task, mode, fold, batch_size, missing in entries}

        def setup(point):
            (fold, batch_size), (task, mode, _) = point, points[point]
            config = config_from_args(args, task, mode, fold, batch_size, backend=backend, device=str(device))
            try:
                return Benchmark(config, args.warmup)
            except (BackendError, ValueError) as e:
                print(f"skipping {name} fold {fold} batch {batch_size}: {e}", file=sys.stderr)
                failures.append(point)

        def measure(bench, trial):
            if args.latency:
                return bench.latency_trial(trial, args.latency_batches, args.latency_seconds)
            return bench.trial(trial, args.iters, args.min_time)

        known = {fold: batch for (model, fold), batch in (stopped or {}).items() if model == name}
        for _, _, measurement in interleaved_points(points, args.trials, setup, measure,
                                                    skip=lambda point, trial: trial not in points[point][2],
                                                    stop_ms=1000 * CURVE_STOP_SECONDS if args.curve else None,
                                                    stopped=known):
            line = measurement_row(name, measurement, timing)
            append_line(args.csv, line)
            print(line, flush=True)
            measured += 1
    return len(failures), measured


def curve_stops(csv_path):
    """{(model, fold): the smallest batch whose median latency passed CURVE_STOP_SECONDS} in the CSV's latency rows:
    where a resumed --curve stops doubling."""
    rows = [r for r in read_rows(csv_path) if r["Timing"] == "latency" and r["Latency p50 (ms)"]]
    stops = {}
    for r in rows:
        if float(r["Latency p50 (ms)"]) > 1000 * CURVE_STOP_SECONDS:
            key, batch = (r["Model"], int(r["Fold"])), int(r["Batch Size"])
            stops[key] = min(batch, stops.get(key, batch))
    return stops


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
        fill_timing(args, device, args.quick)
        args.folds = args.folds or ([1, 4] if args.quick else [1, 2, 3, 4])
        args.latency = args.latency or args.curve
        if args.latency and args.quick:
            raise ValueError("--quick and --latency (or --curve) exclude each other: for a short latency run pass "
                             "--latency_batches 20 --latency_seconds 1")
        backend = resolve_backend(args.backend, device, args.precision)
        fill_user_model(args)
        if args.model_file and args.models:
            raise ValueError("--models and --model_file exclude each other: measure the registry's models or yours")
        if args.model_file:
            checked_model(args.model_file, args.input_shape)  # before the CSV is touched
        models = resolve_models(args.models) if args.models else default_models()
        configs = inference_configs(args, models)
        if Path(args.csv).is_dir():
            raise ValueError(f"{args.csv} is a directory: name the CSV to write (e.g. {Path(args.csv) / 'results.csv'})")
        done = open_results(args.csv)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    except OSError as e:
        if filesystem_failure(e):  # a full disk: the command's one line, exit 1
            raise
        parser.exit(2, f"error: cannot write {args.csv}: {e.strerror}; choose a writable path\n")

    if not args.no_peak and not machine_file(args.csv).exists():
        print(f"measuring the machine's peak -> {machine_file(args.csv)}", file=sys.stderr)
        machine_file(args.csv).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(machine_file(args.csv), measure_peak(device))
    print(format_row(HEADER), flush=True)
    timing = "latency" if args.latency else "quick" if args.quick else "full"
    todo = todo_list(args, configs, backend, device, done, timing)
    skipped = len(configs) - len(todo)
    if skipped:
        print(f"resuming: {skipped} configuration(s) already in {args.csv}", file=sys.stderr)

    failures, measured = measure_interleaved(args, todo, backend, device, timing,
                                             curve_stops(args.csv) if args.curve else None)
    if failures:
        parser.exit(1, f"error: {failures} configuration(s) could not be measured (see above)\n")
    best, note = fastest_folds(args.csv, [c[0] for c in configs], sorted({c[4] for c in configs}), backend,
                               args.precision, device, args.align, timing)
    if best:
        head = (f"fold to take ({backend}, {args.precision}, {device}; the fastest, or the smaller where two tie within "
                "the trials' spread)")
        if len(best) == 1 and not args.curve:
            said = [f"{head}: {best[0]}" + (f"; {note}" if note else "")]
        else:
            said = [f"{head}, per model and batch:", *(f"  {b}" for b in best)] + ([note] if note else [])
        if args.curve:
            bounds = ", ".join(f"{b:g}" for b in BOUNDS_MS)
            said.append(f"within a p99 bound ({bounds} ms): python3 util/inference_report.py {args.csv}")
        print("\n".join(said), file=sys.stderr)
    print(f"measured {measured} trial(s) of {len(todo)} configuration(s); "
          f"{args.csv} holds every row", file=sys.stderr)


if __name__ == "__main__":
    run_command(main, "every row measured so far is in the CSV: run the same command again to measure only the rest",
                "run the same command to measure only the rest")
