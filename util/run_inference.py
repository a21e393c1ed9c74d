"""The inference sweep behind ./run_inference.sh: every model x fold x batch size x trial, one CSV row each.

Rows are `Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec` (SPEC section 5) followed by
`Backend,Precision,Device,Chunk`. Each row is printed and appended as soon as it is measured; the
CSV is rewritten crash-safely per row, so a kill leaves complete rows only. Re-running the same
command resumes: configurations already in the CSV are skipped.

Protocols: on CUDA the paper's (fp16, 100 warm-up and 10000 timed batches, 10 trials); on the CPU
a time-bounded one (fp32, 2 warm-up batches, trials of at least 1 s, 3 trials) so the default
sweep of the 14 models finishes in well under 30 minutes on 2 cores; --quick is a smoke run.
The machine's measured peak (util/peak.py) is written next to the CSV as <name>.machine.json.
"""
import argparse
import csv
import io
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm

from config.tasks import all_tasks, get_task
from infer import BACKENDS, PRECISIONS, Benchmark, BackendError, Config, chunk_arg, resolve_backend
from util.common import pick_device, positive_int, write_json_atomic, write_text_atomic
from util.peak import measure_peak

HEADER = ["Model", "Trial", "Fold", "Batch Size", "Mode", "Throughput", "FLOPs/sec",
          "Backend", "Precision", "Device", "Chunk"]
MODE_NAMES = {"original": "Original", "folded": "Folded", "efficientnet": "EfficientNet"}
SWEEP_FAMILIES = ("game", "noscope")  # the paper's inference models; cifar ResNet-18s on request


def sweep_models():
    """`{model name: (task, mode kind)}` for every model that can be measured, in registry order.

    mode kind "folded" covers the original (fold 1) and the FoldedCNNs; "efficientnet" the
    compound-scaled baseline, whose folds are phi.
    """
    models = {}
    for task in all_tasks().values():
        models[task.model_map_key] = (task, "folded")
    for task in all_tasks().values():
        if task.compound_scaling_baseline:
            models[task.efficientnet_key] = (task, "efficientnet")
    return models


def default_models():
    return [name for name, (task, _) in sweep_models().items() if task.family in SWEEP_FAMILIES]


def resolve_models(names):
    """Model names for `names` (model names as in the CSV, or task names); ValueError on unknown ones."""
    models, resolved = sweep_models(), []
    for name in names:
        if name not in models:
            try:
                name = get_task(name).model_map_key
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
            mode = "efficientnet" if kind == "efficientnet" else "original" if fold == 1 else "folded"
            for batch_size in batch_sizes:
                yield name, task, mode, fold, batch_size


def read_rows(path):
    """The CSV's rows as dicts ([] when missing); ValueError if it is not a results CSV of this format."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if not text.strip():
        return []
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    if header != HEADER:
        raise ValueError(f"{path} has the header {','.join(header)!r}, not this sweep's {','.join(HEADER)!r}: "
                         "give a new CSV path (the existing file is left as it is)")
    if not text.endswith("\n"):
        raise ValueError(f"{path} ends in an incomplete line: delete that line and re-run to resume")
    return [dict(zip(HEADER, row)) for row in reader]


KEY_COLUMNS = ("Model", "Trial", "Fold", "Batch Size", "Mode", "Backend", "Precision", "Device")


def row_key(row):
    """What identifies a measurement: a re-run skips rows with a key already in the CSV."""
    return tuple(str(row[k]) for k in KEY_COLUMNS)


def format_row(values):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def append_row(path, line):
    """Append `line` crash-safely: the new file replaces the old one whole (no partial rows)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if not old:
        old = format_row(HEADER)
    write_text_atomic(path, old + line)


def machine_file(csv_path):
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + ".machine.json")


def build_parser():
    parser = argparse.ArgumentParser(prog="run_inference.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="results CSV to append to (created with a header if missing)")
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="models (CSV names such as noscope_coral or efficientnet-game_sot/timer3, or task "
                             "names); default: the 14 game, NoScope and baseline models")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=None,
                        help="folds of the game and NoScope CNNs (1 = the original CNN); default 1 2 3 4")
    parser.add_argument("--phis", nargs="+", type=positive_int, default=[1, 2],
                        help="compound-scaling coefficients of the baselines (1 = the original); default 1 2")
    parser.add_argument("--batch_sizes", nargs="+", type=positive_int, default=[1024],
                        help="images per batch; default 1024")
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="trials per configuration; default 10 on CUDA, 3 on the CPU")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                        help="default auto: onnxruntime on the CPU, compile on CUDA")
    parser.add_argument("--precision", default=None, choices=tuple(PRECISIONS),
                        help="default fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; default: CUDA when available")
    parser.add_argument("--chunk", type=chunk_arg, default=None,
                        help="inputs per chunk: a number, full or auto (tuned per configuration; the default, "
                             "except 32 with --quick on the CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up batches; default 100 on CUDA, 2 on the CPU")
    parser.add_argument("--iters", type=positive_int, default=None,
                        help="timed batches per trial at least; default 10000 on CUDA, 1 on the CPU")
    parser.add_argument("--min_time", type=float, default=None,
                        help="seconds per trial at least; default 0 on CUDA, 1.0 on the CPU")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: folds 1 and 4, one short trial each, 10 warm-up batches on CUDA")
    parser.add_argument("--no_peak", action="store_true", help="do not measure the machine's peak")
    return parser


def protocol(args, device):
    """(folds, trials, precision, chunk, warm-up, iterations, minimum seconds) from the flags and the device."""
    cuda = device.type == "cuda"
    folds = args.folds or ([1, 4] if args.quick else [1, 2, 3, 4])
    if args.quick:
        trials, warmup, iters, min_time = 1, (10 if cuda else 1), (100 if cuda else 1), (0.0 if cuda else 0.2)
    else:
        trials, warmup, iters, min_time = (10, 100, 10000, 0.0) if cuda else (3, 2, 1, 1.0)
    pick = lambda given, default: default if given is None else given  # noqa: E731
    precision = pick(args.precision, "fp16" if cuda else "fp32")
    chunk = pick(args.chunk, "32" if args.quick and not cuda else "auto")
    return (folds, pick(args.trials, trials), precision, chunk, pick(args.warmup, warmup), pick(args.iters, iters),
            pick(args.min_time, min_time))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
        folds, trials, precision, chunk, warmup, iters, min_time = protocol(args, device)
        backend = resolve_backend(args.backend, device, precision)
        models = resolve_models(args.models) if args.models else default_models()
        done = {row_key(row) for row in read_rows(args.csv)}
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        if not Path(args.csv).exists():
            write_text_atomic(args.csv, format_row(HEADER))
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    except OSError as e:
        parser.exit(2, f"error: cannot write {args.csv}: {e.strerror}; choose a writable path\n")

    if not args.no_peak and not machine_file(args.csv).exists():
        print(f"measuring the machine's peak -> {machine_file(args.csv)}", file=sys.stderr)
        write_json_atomic(machine_file(args.csv), measure_peak(device))

    print(",".join(HEADER), flush=True)
    todo = []
    for name, task, mode, fold, batch_size in configurations(models, folds, args.phis, args.batch_sizes):
        keys = [(name, str(t), str(fold), str(batch_size), MODE_NAMES[mode], backend, precision, str(device))
                for t in range(trials)]
        missing = [t for t, key in zip(range(trials), keys) if key not in done]
        if missing:
            todo.append((name, task, mode, fold, batch_size, missing))
    skipped = sum(1 for _ in configurations(models, folds, args.phis, args.batch_sizes)) - len(todo)
    if skipped:
        print(f"resuming: {skipped} configuration(s) already in {args.csv}", file=sys.stderr)

    failures = 0
    for name, task, mode, fold, batch_size, missing in tqdm(todo, desc="inference sweep", unit="config",
                                                             file=sys.stderr, disable=not sys.stderr.isatty()):
        config = Config(task.name, mode, fold, batch_size, backend, precision, str(device), chunk)
        try:
            bench = Benchmark(config, warmup)
        except (BackendError, ValueError) as e:
            print(f"skipping {name} fold {fold} batch {batch_size}: {e}", file=sys.stderr)
            failures += 1
            continue
        for trial in missing:
            m = bench.trial(trial, iters, min_time)
            line = format_row([name, trial, fold, batch_size, MODE_NAMES[mode], f"{m.images_per_sec:.2f}",
                               f"{m.flops_per_sec:.6g}", m.backend, m.precision, m.device, m.chunk])
            append_row(args.csv, line)
            print(line, end="", flush=True)
    if failures:
        parser.exit(1, f"error: {failures} configuration(s) could not be measured (see above)\n")


if __name__ == "__main__":
    main()
