"""Which fold to deploy: the trained runs' accuracy beside the measured throughput, and a recommendation.

    python3 util/choose_fold.py SAVEDIR results.csv          # throughput from a sweep's CSV
    python3 util/choose_fold.py SAVEDIR --measure             # or measured now, on this device

SAVEDIR is a train.py savedir: every finished run's result.json (test top-1, worst slot) is read.
Throughput is the median images/sec over trials of each task's model at each fold, from the CSV
(`--backend`/`--precision` pick the rows when it holds several kinds; several batch sizes give one table with a
recommendation per batch size, `--batch_size` picks one) or measured now with
`--measure` (util/measure/benchmark.py's protocol for this device, trials interleaved over the folds). Runs of
your own CNN (train.py --model_file) match the CSV rows of `./run_inference.sh --model_file FILE.py:FUNCTION`
(Model FILE.FUNCTION); --measure rebuilds them from the runs' model file and input shape.

Per task it prints: f, the recipe of the most accurate run at that f, its epochs and training time, test
top-1, the worst slot, the gap to f=1 in points, images/sec and the speed-up over f=1. The recommended f is the fastest whose gap
is at most --max_drop points (f=1 always qualifies; equal speeds: the smaller f), unless a smaller qualifying fold
ties with it: the per-trial ratio of their images/sec (trials paired in order,
which a sweep interleaves) has a range holding 1.0; then the smaller. A CSV of one trial per fold, or of a --quick
smoke run, is said to be one in the output. A fold with a trained run but no throughput, or throughput but no trained run, is listed as such
and never recommended; a task without a trained f=1 gets no recommendation. With `--precision int8`, a CSV that also
holds fp32 rows of the same device and batch size (on fp32's default backend, or int8's) gets a line per task saying
whether int8 is faster than fp32 for that model, by the rule infer.py uses (util/measure/compare.py's
precision_verdict; `infer.py TASK --fold auto --precision int8` measures the two interleaved, a CSV's two sweeps are
paired by trial number). --out PREFIX writes
PREFIX.md, PREFIX.csv and PREFIX.png (test top-1 against images/sec, one panel per task).

    python3 util/choose_fold.py SAVEDIR curve.csv --latency_ms 5   # within a latency bound (./run_inference.sh --curve)

names per task the fold and batch with the most images/sec whose p99 latency is within the bound, among the folds
within --max_drop; exit 3 when nothing fits.
"""
import argparse
import csv
import io
import json
import math
import os
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from config.tasks import SYNTHETIC, resolve_dataset
from models import mode_of, model_key
from models.user import model_key as user_model_key
from util.core.cli import (add_align_arg, add_out_arg, float_between, markdown_table, one_line_errors, out_paths,
                           positive_int, run_command)
from util.core.device import cpu_name, pick_device
from util.core.files import write_text_atomic
from util.measure.benchmark import (Benchmark, add_measurement_args, config_from_args, fill_timing,
                                    interleaved_trials)
from util.measure.compare import choose_within, fold_choice, medians, precision_verdict, ratio, speedups
from util.measure.latency import curves
from util.runtime.backends import default_backend
from util.train.trainer import behind_note
from util.measure.results_csv import check_results_file, fold_trials, load, trial_note

COLUMNS = ["task", "dataset", "fold", "recipe", "epochs", "train_minutes", "test_top1", "worst_slot_top1", "gap_points",
           "images_per_sec", "speedup", "speedup_low", "speedup_high", "trials", "recommended", "note", "batch_size"]


def trained_runs(savedir, align=1):
    """{task name: {fold: result}}: the most accurate finished run of the original or a FoldedCNN (not the baseline) per task and fold, of
    the runs at `align` (f=1 has the original's widths whatever the align)."""
    runs = {}
    for path in sorted(Path(savedir).rglob("result.json")):
        result = json.loads(path.read_text())
        if result.get("mode", "folded") not in ("folded", "original") or result.get("test_top1") is None:
            continue  # the compound-scaled baseline, or not a training result
        if int(result["fold"]) > 1 and result.get("align", 1) != align:
            continue
        name = result["dataset"] if "model_file" in result else resolve_dataset(result["dataset"])[0].name
        folds = runs.setdefault(name, {})
        fold = int(result["fold"])
        if fold not in folds or result["test_top1"] > folds[fold]["test_top1"]:
            folds[fold] = result
    return runs


def own_model(folds):
    """The model file of a user's task's runs ({fold: result}), None for a registry task."""
    return next((r["model_file"] for r in folds.values() if "model_file" in r), None)


def csv_name(name, folds):
    """The Model column of a task's rows in a results CSV: the registry's key, or a user model's function name (what
    ./run_inference.sh --model_file writes)."""
    return user_model_key(own_model(folds)) if own_model(folds) else model_key(name)


def csv_throughput(path, runs, backend=None, precision=None, batch_size=None, device=None, align=1):
    """({task name: {fold: [images/sec per trial]}}, source, (backend, precision, device, batch size)): the FoldedCNN
    rows of a sweep CSV at `align` for the tasks of `runs` (trained_runs), what they are (a --quick smoke run or one
    trial per fold said), and the group they come from; a ValueError when the CSV holds several
    backend/precision/device/batch groups and the flags pick none. Where a CSV holds a full sweep's rows and a
    --quick run's of the same kind, the full sweep's are read."""
    frame = throughput_rows(path, backend, precision, batch_size, device, align)
    groups = frame.groupby(["Backend", "Precision", "Device", "Batch Size"]).size().index.tolist()
    if len(groups) > 1:
        listed = "; ".join(f"--backend {b} --precision {p} --batch_size {n} --device {d}" for b, p, d, n in groups)
        raise ValueError(f"{path} holds {len(groups)} kinds of measurement: pick one with {listed}")
    if not groups:
        raise ValueError(f"{path} has no FoldedCNN rows for these flags: run ./run_inference.sh {path} first")
    if (frame["Timing"] == "full").any():
        frame = frame[frame["Timing"] == "full"]
    trials = {name: fold_trials(frame, csv_name(name, folds)) for name, folds in runs.items()}
    backend, precision, device, batch = groups[0]
    counts = sorted({len(t) for by_fold in trials.values() for t in by_fold.values()}) or [0]
    said = trial_note(frame)
    source = (f"{backend}, {precision}, {device}, batch {batch}, median of {counts[0]}"
              + (f"-{counts[-1]}" if len(counts) > 1 else "") + f" trial(s) (from {path})"
              + (f": **{said}**" if said else ""))
    return trials, source, groups[0]


def throughput_rows(path, backend=None, precision=None, batch_size=None, device=None, align=1):
    """The CSV's throughput rows (not latency rows) of the originals and FoldedCNNs at `align`, of the flags given."""
    frame = load(path)
    frame = frame[frame["Mode"].isin(["Original", "Folded"]) & ((frame["Align"] == align) | (frame["Fold"] == 1))
                  & (frame["Timing"] != "latency")]
    for column, value in (("Backend", backend), ("Precision", precision), ("Batch Size", batch_size),
                          ("Device", device)):
        if value is not None:
            frame = frame[frame[column] == value]
    return frame


def csv_batch_sizes(path, backend=None, precision=None, device=None, align=1):
    """The batch sizes to read from the CSV: each one it holds where its rows (of the flags) are of one backend,
    precision and device; else [None] (csv_throughput then names the flags that pick one kind)."""
    frame = throughput_rows(path, backend, precision, None, device, align)
    if frame.groupby(["Backend", "Precision", "Device"]).ngroups != 1:
        return [None]
    return sorted(int(b) for b in frame["Batch Size"].unique())


def fp32_beside_int8(path, runs, group, align=1):
    """{task: {fold: [images/sec per trial]}} of the CSV's fp32 rows of the device and batch size of its int8 rows
    (`group`, from csv_throughput), on fp32's default backend for the device or else int8's; {} when the CSV holds
    none."""
    int8_backend, _, device, batch = group
    for backend in dict.fromkeys((default_backend(torch.device(device), "fp32"), int8_backend)):
        try:
            trials = csv_throughput(path, runs, backend, "fp32", batch, device, align)[0]
        except ValueError:  # no fp32 rows of that kind
            continue
        return {name: t for name, t in trials.items() if t}
    return {}


def int8_line(int8, fp32):
    """What a task's int8 and fp32 trials ({fold: [images/sec per trial]} each, from the CSV) say: which precision to
    deploy (util/measure/compare.py's precision_verdict, their trials paired by number)."""
    trials = {**{("int8", f): t for f, t in int8.items()}, **{("fp32", f): t for f, t in fp32.items()}}
    return "int8 against fp32 (the same CSV): " + precision_verdict(trials, paired="separate sweeps, trials paired by number")


def measured_throughput(tasks, runs, args):
    """{task name: {fold: [images/sec per trial]}} measured now at every trained fold, trials interleaved."""
    device = pick_device(args.device)
    fill_timing(args, device)
    speeds, backend = {}, None
    for name in tasks:
        benches = {}
        for fold in sorted(runs[name]):
            model_file, shape = own_model(runs[name]), runs[name][fold].get("input_shape")
            benches[fold] = Benchmark(config_from_args(args, model_file or name, mode_of(fold), fold,
                                                       args.batch_size or 1024, device=str(device),
                                                       model_file=model_file, input_shape=shape and tuple(shape)),
                                      args.warmup)
            backend = benches[fold].backend
        speeds[name] = interleaved_trials(benches, args.trials, args.iters, args.min_time)
        print(f"measured {name}: " + ", ".join(f"f={f} {v:,.0f} images/sec" for f, v in medians(speeds[name]).items()),
              file=sys.stderr)
    where = f"{device} ({cpu_name()}, {os.cpu_count()} cores)" if device.type == "cpu" else str(device)
    return speeds, (f"{backend}, {args.precision}, {where}, batch {args.batch_size or 1024}, median of {args.trials} "
                    "interleaved trials (measured now)")


def recommendation_rows(runs, trials, max_drop):
    """The table's rows (COLUMNS) for every task (`trials`: {task: {fold: [images/sec per trial]}}): one per fold with
    a run or a throughput, the recommended one marked: of the folds within `max_drop` points of f=1, the one that
    util/measure/compare.py's fold_choice takes (the fastest, unless a smaller such fold ties with it within the
    trials' spread, then the smallest; equal speeds: the smaller f)."""
    rows = []
    for name in runs:
        folds, by_fold = runs[name], trials.get(name, {})
        speed, base = medians(by_fold), folds.get(1)
        task_rows = []
        for fold in sorted(set(folds) | set(speed)):
            result, ips = folds.get(fold), speed.get(fold)
            gap = None if result is None or base is None else round(100 * (base["test_top1"] - result["test_top1"]), 6) + 0.0
            behind = result and base and behind_note(result, base.get("best_val_top1"), "the original (f=1)")
            note = ("no trained run" if result is None else "no throughput" if ips is None else
                    "no f=1 run: gap unknown" if base is None else
                    "fell far behind f=1 on validation: docs/own_cnn.md" if behind else "")
            r = ratio(by_fold, fold, 1) if fold > 1 else None
            task_rows.append({
                "task": name, "dataset": result and result["dataset"], "fold": fold,
                "recipe": result and result.get("recipe", "paper"),
                "epochs": (result or {}).get("epochs"), "train_minutes": minutes((result or {}).get("train_seconds")),
                "test_top1": result and result["test_top1"],
                "worst_slot_top1": result and result.get("worst_slot_test_top1", result["test_top1"]),
                "gap_points": gap, "images_per_sec": ips,
                "speedup": speedups(speed).get(fold), "speedup_low": r and r.low, "speedup_high": r and r.high,
                "trials": len(by_fold.get(fold, [])) or None, "recommended": False, "note": note})
        allowed = accurate_folds(folds, max_drop)
        eligible = {r["fold"]: r for r in task_rows if not r["note"] and r["fold"] in allowed}
        if eligible:
            choice = fold_choice({fold: by_fold[fold] for fold in eligible}, verb="recommended")
            if choice.tie:  # a faster fold ties with the one taken
                eligible[choice.fastest]["note"] = choice.tie
            eligible[choice.fold]["recommended"] = True
        rows += task_rows
    return rows


def accurate_folds(folds, max_drop):
    """The folds of a task's runs ({fold: result}) that may be deployed: f=1, and each fold whose test top-1 is at
    most `max_drop` points below f=1's and that did not fall far behind it on validation."""
    base = folds.get(1)
    if base is None:
        return set()
    return {1} | {fold for fold, result in folds.items()
                  if fold > 1 and 100 * (base["test_top1"] - result["test_top1"]) <= max_drop + 1e-9
                  and not behind_note(result, base.get("best_val_top1"), "the original (f=1)")}


def csv_curves(path, backend=None, precision=None, device=None):
    """{model: latency.Curve} of the CSV's latency rows (./run_inference.sh --curve) of one backend, precision and
    device; a ValueError naming the flags to pick one where it holds several, or naming the command without any."""
    frame = load(path)
    for column, value in (("Backend", backend), ("Precision", precision), ("Device", device)):
        if value is not None:
            frame = frame[frame[column] == value]
    found = curves(frame)
    groups = sorted({key[1:] for key in found})
    if not groups:
        raise ValueError(f"{path} has no latency rows for these flags: measure them with ./run_inference.sh {path} "
                         "--curve")
    if len(groups) > 1:
        listed = "; ".join(f"--backend {b} --precision {p} --device {d}" for b, p, d in groups)
        raise ValueError(f"{path} holds latency curves of {len(groups)} kinds: pick one with {listed}")
    return {key[0]: curve for key, curve in found.items()}, groups[0]


def latency_rows(runs, found, max_drop, bound_ms):
    """Per task with a curve: the fold and batch with the most images/sec whose p99 latency is within `bound_ms`
    among its accurate folds (compare.choose_within), with its gain over the best f=1 point within the bound; pick
    None where nothing fits (then `smallest_p99_ms` says how close the curve came)."""
    rows = []
    for name, folds in runs.items():
        curve = found.get(csv_name(name, folds))
        if curve is None:
            continue
        allowed = accurate_folds(folds, max_drop)
        trials = {k: v for k, v in curve.trials.items() if k[0] in allowed}
        choice = choose_within(trials, curve.p99_ms, bound_ms)
        row = {"task": name, "pick": None, "smallest_p99_ms": min(curve.p99_ms.values())}
        if choice:
            fold, batch = choice.pick
            base = folds[1]["test_top1"]
            gain = ("f=1 is the pick" if fold == 1 else "no f=1 point fits" if choice.gain is None else
                    f"{choice.gain.median:.2f}x f=1 at batch {choice.original[1]}" + choice.gain.spread())
            row.update(pick=choice.pick, images_per_sec=statistics.median(curve.trials[choice.pick]),
                       p99_ms=curve.p99_ms[choice.pick], gain=gain, test_top1=folds[fold]["test_top1"],
                       gap_points=100 * (base - folds[fold]["test_top1"]))
        rows.append(row)
    return rows


def latency_markdown(rows, bound_ms, max_drop, source):
    lines = [f"# Which fold and batch within {bound_ms:g} ms", "",
             f"Latency: {source}. Per task, of the folds within {max_drop:g} points of f=1's test top-1, the (fold, "
             "batch) with the most images/sec whose p99 latency per batch is within the bound (the smaller fold, then "
             "batch, where two tie within the trials' spread), and its gain over the best f=1 point within the same "
             "bound. Compute latency only: a folded model also waits for its f images.", ""]
    body = []
    for r in rows:
        if r["pick"] is None:
            body.append([r["task"], "nothing fits", "", "", f"smallest p99 {r['smallest_p99_ms']:.3g} ms", "", "", ""])
        else:
            body.append([r["task"], f"f={r['pick'][0]}", str(r["pick"][1]), f"{r['images_per_sec']:,.0f}",
                         f"{r['p99_ms']:.3g}", r["gain"], f"{r['test_top1']:.4f}", f"{r['gap_points']:.1f}"])
    lines += markdown_table(["task", "fold", "batch", "images/sec", "p99 (ms)", "gain", "test top-1", "gap (pts)"],
                            body)
    return "\n".join(lines) + "\n"


def speedup_cell(row):
    """'1.23x (1.10-1.30)' with the range over trials, '1.23x' with one trial, '-' without."""
    if row["speedup"] is None:
        return "-"
    several = (row["trials"] or 0) > 1 and row["speedup_low"] is not None
    spread = f" ({row['speedup_low']:.2f}-{row['speedup_high']:.2f})" if several else ""
    return f"{row['speedup']:.2f}x{spread}"


def minutes(seconds):
    return None if seconds is None else seconds / 60


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(rows, source, max_drop, notes=None):
    lines = ["# Which fold to deploy", "", f"Throughput: {source}. Recommended (**bold**): the fastest fold whose "
             f"test top-1 is at most {max_drop:g} points below f=1's, or the smaller of two folds whose speeds tie "
             "(their per-trial ratio's range holds 1.0). Speed-up: median over trials (range in brackets).", ""]
    several = len({r["batch_size"] for r in rows}) > 1  # a column and a recommendation per batch size
    for name in dict.fromkeys(r["task"] for r in rows):
        table = []
        for r in (r for r in rows if r["task"] == name):
            cells = ([str(r["batch_size"])] if several else []) + [
                     f"**{r['fold']}**" if r["recommended"] else str(r["fold"]), r["recipe"] or "-",
                     fmt(r["epochs"], "d"), fmt(r["train_minutes"], ".2f"),
                     fmt(r["test_top1"], ".4f"), fmt(r["worst_slot_top1"], ".4f"), fmt(r["gap_points"], ".1f"),
                     fmt(r["images_per_sec"], ",.0f"), speedup_cell(r), r["note"]]
            table.append(cells)
        chosen = [r for r in rows if r["task"] == name and r["recommended"]]
        said = ", ".join(f"f={r['fold']}" + (f" at batch {r['batch_size']}" if several else "") for r in chosen)
        lines += [f"## {name}: " + (f"deploy {said}" if chosen else "no recommendation"), ""]
        datasets = [r["dataset"] for r in rows if r["task"] == name and r["dataset"]]
        lines += [training_data_line(datasets), ""] if datasets else []
        if notes and name in notes:
            lines += [notes[name], ""]
        lines += markdown_table((["batch"] if several else []) + ["f", "recipe", "epochs", "training (min)", "test top-1", "worst slot", "gap (pts)", "images/sec", "speed-up",
                                 "note"], table) + [""]
    return "\n".join(lines).rstrip() + "\n"


def training_data_line(datasets):
    """'Trained on noscope-coral.', saying 'generated stand-in data' for synthetic- datasets, whose accuracy says
    nothing of the real task's."""
    names = list(dict.fromkeys(datasets))
    stand_in = [d for d in names if d.startswith(SYNTHETIC)]
    line = f"Trained on {', '.join(names)}."
    if stand_in:
        line += (" **Generated stand-in data**, not the task's real images: these accuracies say nothing of the real "
                 "task's; train on its data before you deploy.")
    return line


def write_csv(rows, path):
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]
                         for k in COLUMNS})
    write_text_atomic(path, out.getvalue())


def plot(rows, source, path):
    """Test top-1 against images/sec, one panel per task; the recommended fold starred."""
    names = list(dict.fromkeys(r["task"] for r in rows))
    cols = min(3, len(names))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        plotted = [r for r in rows if r["task"] == name and r["test_top1"] is not None and r["images_per_sec"]]
        for r in plotted:
            ax.scatter(r["images_per_sec"], r["test_top1"], marker="*" if r["recommended"] else "o",
                       s=160 if r["recommended"] else 40, color="#d62728" if r["recommended"] else "#1f77b4",
                       zorder=3)
            ax.annotate(f"f={r['fold']}", (r["images_per_sec"], r["test_top1"]), xytext=(5, 4),
                        textcoords="offset points", fontsize=8)
        ax.set(title=name, xlabel="images/sec (median)", ylabel="test top-1")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Accuracy against throughput (red star: recommended); {source}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def max_drop_points(text):
    """argparse type for --max_drop: a finite number of points, at least 0."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"give a number of points >= 0, not {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="a train.py savedir (its finished runs' result.json are read)")
    parser.add_argument("csv", nargs="?", help="a results CSV of ./run_inference.sh (or use --measure)")
    parser.add_argument("--measure", action="store_true", help="measure the throughput now, on this device")
    parser.add_argument("--max_drop", type=max_drop_points, default=1.0,
                        help="largest accepted loss of test top-1 against f=1, in points; default 1.0")
    add_align_arg(parser, ": read the runs trained and measured with it")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="the batch size of the CSV rows to read (of --measure: default 1024)")
    parser.add_argument("--trials", type=positive_int, default=3, help="--measure: trials per fold; default 3")
    parser.add_argument("--latency_ms", type=float_between(1e-3), default=None, metavar="L",
                        help="with a CSV of latency curves (./run_inference.sh CSV --curve): per task the fold and "
                             "batch with the most images/sec whose p99 latency is within L ms (exit 3 when nothing "
                             "fits)")
    add_out_arg(parser, ["md", "csv", "png"])
    add_measurement_args(parser)
    args = parser.parse_args(argv)
    if (args.csv is None) == (not args.measure):
        parser.error("give a results CSV or --measure (one of them)")
    if args.latency_ms is not None:
        return choose_within_latency(parser, args)
    with one_line_errors(parser):
        if not Path(args.savedir).is_dir():
            raise ValueError(f"no savedir {args.savedir}: train first (python3 train.py {args.savedir})")
        runs = trained_runs(args.savedir, args.align)
        if not runs:
            raise ValueError(f"{args.savedir} has no finished runs (no result.json): train first")
        if args.measure:
            speeds, source = measured_throughput(list(runs), runs, args)
        else:
            check_results_file(args.csv)
            backend = None if args.backend == "auto" else args.backend
            device = None if args.device == "auto" else args.device
            batches = ([args.batch_size] if args.batch_size else
                       csv_batch_sizes(args.csv, backend, args.precision, device, args.align))
            read = [csv_throughput(args.csv, runs, backend, args.precision, batch, device, args.align)
                    for batch in batches]  # several batch sizes: one table, a recommendation per batch size
            source = " | ".join(part[1] for part in read)
    if args.measure:
        rows = [{**row, "batch_size": args.batch_size or 1024} for row in recommendation_rows(runs, speeds, args.max_drop)]
    else:
        rows = [{**row, "batch_size": group[3]} for speeds, _, group in read
                for row in recommendation_rows(runs, speeds, args.max_drop)]
        speeds, group = read[0][0], read[0][2]
    notes = {}
    if args.csv and args.precision == "int8" and len(read) == 1:  # int8 is not faster everywhere: say so where the CSV shows it
        fp32 = fp32_beside_int8(args.csv, runs, group, args.align)
        notes = {name: int8_line(speeds[name], fp32[name]) for name in fp32 if speeds.get(name)}
    text = markdown(rows, source, args.max_drop, notes)
    print(text, end="")
    if args.out:
        md, table_csv, png = out_paths(args.out, ["md", "csv", "png"]).values()
        md.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(md, text)
        write_csv(rows, table_csv)
        plot(rows, source, png)
        print(f"wrote {md}, {table_csv}, {png}", file=sys.stderr)
    chosen = [r for r in rows if r["recommended"]]
    print(f"recommended for {len(chosen)} of {len(runs)} task(s): "
          + (", ".join(f"{r['task']} f={r['fold']}" + (f" (trained on {r['dataset']}: generated stand-in data)"
                                                       if (r["dataset"] or "").startswith(SYNTHETIC) else "")
                       for r in chosen) or "none"), file=sys.stderr)



def choose_within_latency(parser, args):
    """--latency_ms: the table of latency_rows, printed (and written with --out); exit 3 when nothing fits."""
    with one_line_errors(parser):
        if args.measure:
            raise ValueError("--latency_ms reads latency curves from a CSV: measure them with ./run_inference.sh "
                             "CSV --curve, then pass the CSV")
        runs = trained_runs(args.savedir, args.align) if Path(args.savedir).is_dir() else {}
        if not runs:
            raise ValueError(f"{args.savedir} has no finished runs (no result.json): train first")
        check_results_file(args.csv)
        found, (backend, precision, device) = csv_curves(args.csv, None if args.backend == "auto" else args.backend,
                                                         args.precision, None if args.device == "auto" else args.device)
    rows = latency_rows(runs, found, args.max_drop, args.latency_ms)
    if not rows:
        parser.exit(2, f"error: {args.csv} has no latency curve of these runs' models: measure them with "
                       f"./run_inference.sh {args.csv} --curve --models ...\n")
    text = latency_markdown(rows, args.latency_ms, args.max_drop, f"{backend}, {precision}, {device} (from {args.csv})")
    print(text, end="")
    if args.out:
        md = out_paths(args.out, ["md"])["md"]
        md.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(md, text)
        print(f"wrote {md}", file=sys.stderr)
    if not any(r["pick"] for r in rows):
        parser.exit(3, f"nothing fits within {args.latency_ms:g} ms: the smallest p99 measured is "
                       f"{min(r['smallest_p99_ms'] for r in rows):.3g} ms\n")


if __name__ == "__main__":
    run_command(main)
