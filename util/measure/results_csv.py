"""Results of the inference sweep: the CSV schema, crash-safe appends and resume, reading it back.

The CSV's rows are `Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec` (docs/protocol.md,
section 5) followed by `Backend,Precision,Device,Chunk,Align,Timing,Latency p50 (ms),Latency p99 (ms),Timed Batches` (Timing:
`full`, `quick` for a --quick smoke run, whose one short trial every reader of the CSV says it is, or `latency` for a
row whose batches were timed one by one (--latency: its images/sec are those batches', its latency columns filled);
sweeps before 2026-12-07 call it Protocol and have no latency columns). Rows are appended one at a time and
flushed to disk; a row torn by a crash (a last line without its newline) is dropped on resume.
The machine's measured peak (util/measure/machine.py) and the report live in the folder `<name>-report/` beside
the CSV, so a sweep in any folder adds one CSV and one folder to it (util/inference_report.py writes the
report there).
"""
import csv
import io
from pathlib import Path

import pandas as pd

from util.core.files import complete_lines, keep_lines, write_text_atomic

LATENCY_COLUMNS = ["Latency p50 (ms)", "Latency p99 (ms)", "Timed Batches"]
HEADER = ["Model", "Trial", "Fold", "Batch Size", "Mode", "Throughput", "FLOPs/sec",
          "Backend", "Precision", "Device", "Chunk", "Align", "Timing", *LATENCY_COLUMNS]
# Headers of older sweeps, read with the columns they lack at these values: before --align the widths were the
# paper's (Align 1); before the Timing column no sweep was marked quick; before the latency columns no row timed its
# batches one by one; RENAMED_COLUMNS: the Timing column's earlier name.
ADDED_COLUMNS = {"Align": "1", "Timing": "full", **{column: "" for column in LATENCY_COLUMNS}}
RENAMED_COLUMNS = {"Protocol": "Timing"}
BEFORE_LATENCY = HEADER[:-len(LATENCY_COLUMNS)]
OLDER_HEADERS = (BEFORE_LATENCY[:-2], BEFORE_LATENCY[:-1], BEFORE_LATENCY, [*BEFORE_LATENCY[:-1], "Protocol"])
KEY_COLUMNS = ("Model", "Trial", "Fold", "Batch Size", "Mode", "Backend", "Precision", "Device", "Align", "Timing")
MODE_NAMES = {"original": "Original", "folded": "Folded", "efficientnet": "EfficientNet"}
MODE_OF_NAME = {name: mode for mode, name in MODE_NAMES.items()}


def check_results_file(path):
    """ValueError naming the fix when `path` is not an existing results CSV (missing, or a directory)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a results CSV: pass the CSV file that ./run_inference.sh wrote "
                         f"(e.g. {path / 'results.csv'})")
    if not path.is_file():
        raise ValueError(f"{path} does not exist: run ./run_inference.sh {path} first")


def read_rows(path):
    """The CSV's complete rows as dicts ([] when missing or empty); ValueError if it is not a results CSV."""
    lines = complete_lines(path)
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n"))
    header = next(reader)
    if header != HEADER and header not in OLDER_HEADERS:
        raise ValueError(f"{path} has the header {','.join(header)!r}, not this sweep's {','.join(HEADER)!r}: "
                         "give a new CSV path (the existing file is left as it is)")
    header = [RENAMED_COLUMNS.get(name, name) for name in header]
    rows = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path} line {number} has {len(row)} fields, not the header's {len(header)}: "
                             "repair or remove that line (the file is left as it is)")
        rows.append({**ADDED_COLUMNS, **dict(zip(header, row))})
    return rows


def open_results(path):
    """Ready `path` for appending: created with the header if missing, a torn last row dropped.

    A sweep written before the Align or Timing column (or with its earlier name) is rewritten (crash-safely, every
    value kept) with the columns added (ADDED_COLUMNS) and named as now. Returns the keys (see `row_key`) of the rows already measured.
    """
    path = Path(path)
    rows = read_rows(path)
    if complete_lines(path):
        keep_lines(path, len(rows) + 1)
        if complete_lines(path)[0] != format_row(HEADER):
            write_text_atomic(path, "".join(format_row([row[k] for k in HEADER]) + "\n" for row in [
                dict(zip(HEADER, HEADER))] + rows))
        return {row_key(row) for row in rows}
    header = format_row(HEADER) + "\n"
    text = path.read_text() if path.exists() else ""
    if not header.startswith(text):
        raise ValueError(f"{path} is not empty and has no header line, so it is not this sweep's: "
                         "give a new CSV path (the existing file is left as it is)")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, header)
    return set()


def row_key(row):
    """What identifies a measurement: a re-run skips rows with a key already in the CSV."""
    return tuple(str(row[k]) for k in KEY_COLUMNS)


def format_row(values):
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def measurement_row(name, measurement, timing="full"):
    """The CSV row of one trial (a util.measure.benchmark.Measurement of the model called `name` in the CSV) of a
    `timing` (full or quick) sweep."""
    m = measurement
    latency = ([f"{m.latency.p50_ms:.4g}", f"{m.latency.p99_ms:.4g}", m.latency.batches] if m.latency else
               [""] * len(LATENCY_COLUMNS))
    return format_row([name, m.trial, m.fold, m.batch_size, MODE_NAMES[m.mode], f"{m.images_per_sec:.2f}",
                       f"{m.flops_per_sec:.6g}", m.backend, m.precision, m.device, m.chunk, m.align,
                       "latency" if m.latency else timing, *latency])


def report_dir(csv_path):
    """Where a sweep's companions go: `<csv without suffix>-report/` beside the CSV (results.csv -> results-report/)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + "-report")


def machine_file(csv_path):
    """The machine record of a sweep (util/measure/machine.py): `machine.json` in its report folder."""
    return report_dir(csv_path) / "machine.json"


def load(csv_path):
    """The sweep's rows as a DataFrame with numeric columns; ValueError if empty or not a sweep CSV."""
    rows = read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no results: run ./run_inference.sh {csv_path} first")
    frame = pd.DataFrame(rows, columns=HEADER)
    for column in ("Trial", "Fold", "Batch Size", "Chunk", "Align"):
        frame[column] = frame[column].astype(int)
    for column in ("Throughput", "FLOPs/sec"):
        frame[column] = frame[column].astype(float)
    for column in LATENCY_COLUMNS:  # empty (NaN) in rows timed without latency
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def fold_trials(frame, model):
    """{fold: [images/sec per trial, in trial order]} of `model`'s rows of `frame`, over the trials every fold has
    (a sweep measures a model's folds interleaved, trial t of each in turn: util/measure/compare.py pairs them)."""
    rows = frame[frame["Model"] == model]
    by_fold = {int(f): dict(zip(part["Trial"], part["Throughput"])) for f, part in rows.groupby("Fold")}
    shared = sorted(set.intersection(*(set(t) for t in by_fold.values()))) if by_fold else []
    return {f: [float(t[i]) for i in (shared or sorted(t))] for f, t in by_fold.items()}


def trial_note(frame):
    """What a reader must say of `frame`'s rows: that they come from a --quick smoke run or hold one trial per
    configuration (so speed-ups have no spread); "" for a full sweep of several trials."""
    notes = []
    if (frame["Timing"] == "quick").any():
        notes.append("from a --quick smoke run (one short trial each: not a measurement to deploy by)")
    per_config = frame.groupby(["Model", "Fold", "Batch Size", "Backend", "Precision", "Device", "Align",
                                "Timing"])["Trial"].count()
    if len(per_config) and per_config.max() < 2 and not notes:
        notes.append("one trial per configuration (no spread: speed-ups may be noise)")
    return "; ".join(notes)
