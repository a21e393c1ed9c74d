"""Results of the inference sweep: the CSV schema, crash-safe appends and resume, the report's tables and plots.

The CSV's rows are `Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec` (docs/protocol.md,
section 5) followed by `Backend,Precision,Device,Chunk`. Rows are appended one at a time and
flushed to disk; a row torn by a crash (a last line without its newline) is dropped on resume.
The machine's measured peak (util/machine.py) and the report live in the folder `<name>-report/` beside
the CSV, so a sweep in any folder adds one CSV and one folder to it.
"""
import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from models.flops import arithmetic_intensity  # noqa: E402
from util.common import complete_lines, keep_lines, write_text_atomic  # noqa: E402
from util.inference import sweep_models  # noqa: E402

HEADER = ["Model", "Trial", "Fold", "Batch Size", "Mode", "Throughput", "FLOPs/sec",
          "Backend", "Precision", "Device", "Chunk"]
KEY_COLUMNS = ("Model", "Trial", "Fold", "Batch Size", "Mode", "Backend", "Precision", "Device")
MODE_NAMES = {"original": "Original", "folded": "Folded", "efficientnet": "EfficientNet"}
MODE_OF_NAME = {name: mode for mode, name in MODE_NAMES.items()}


def read_rows(path):
    """The CSV's complete rows as dicts ([] when missing or empty); ValueError if it is not a results CSV."""
    lines = complete_lines(path)
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n"))
    header = next(reader)
    if header != HEADER:
        raise ValueError(f"{path} has the header {','.join(header)!r}, not this sweep's {','.join(HEADER)!r}: "
                         "give a new CSV path (the existing file is left as it is)")
    return [dict(zip(HEADER, row)) for row in reader]


def open_results(path):
    """Ready `path` for appending: created with the header if missing, a torn last row dropped.

    Returns the keys (see `row_key`) of the rows already measured.
    """
    path = Path(path)
    rows = read_rows(path)
    if complete_lines(path):
        keep_lines(path, len(rows) + 1)
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


def measurement_row(name, measurement):
    """The CSV row of one trial (a util.inference.Measurement of the model called `name` in the CSV)."""
    m = measurement
    return format_row([name, m.trial, m.fold, m.batch_size, MODE_NAMES[m.mode], f"{m.images_per_sec:.2f}",
                       f"{m.flops_per_sec:.6g}", m.backend, m.precision, m.device, m.chunk])


def report_dir(csv_path):
    """Where a sweep's companions go: `<csv without suffix>-report/` beside the CSV (results.csv -> results-report/)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + "-report")


def machine_file(csv_path):
    """The machine record of a sweep (util/machine.py): `machine.json` in its report folder."""
    return report_dir(csv_path) / "machine.json"


BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}
GROUP = ["Backend", "Precision", "Device", "Batch Size"]


def load(csv_path):
    """The sweep's rows as a DataFrame with numeric columns; ValueError if empty or not a sweep CSV."""
    rows = read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no results: run ./run_inference.sh {csv_path} first")
    frame = pd.DataFrame(rows, columns=HEADER)
    for column in ("Trial", "Fold", "Batch Size", "Chunk"):
        frame[column] = frame[column].astype(int)
    for column in ("Throughput", "FLOPs/sec"):
        frame[column] = frame[column].astype(float)
    return frame


def medians(frame):
    """Median throughput and FLOP/s over trials, one row per configuration, with speed-ups over fold 1."""
    keys = GROUP + ["Model", "Mode", "Fold"]
    table = frame.groupby(keys, sort=False)[["Throughput", "FLOPs/sec"]].median().reset_index()
    table["Trials"] = frame.groupby(keys, sort=False)["Trial"].count().to_numpy()
    base = table[table["Fold"] == 1].set_index(GROUP + ["Model"])["Throughput"]
    table["Speed-up"] = [row["Throughput"] / base.get(tuple(row[GROUP + ["Model"]]), float("nan"))
                         for _, row in table.iterrows()]
    return table


def markdown(table, machine):
    """The report: one table per backend/precision/device/batch size, one row per model."""
    peak_note = ""
    if machine:
        peaks = ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in machine["matmul_flops"].items())
        peak_note = (f"Machine: {machine['name']}; measured matmul peak {peaks}; memory bandwidth "
                     f"{machine['bandwidth_bytes_per_sec'] / 1e9:.1f} GB/s.\n\n")
    lines = ["# Inference throughput", "", peak_note.strip(), ""] if peak_note else ["# Inference throughput", ""]
    lines += ["Each cell: median images/sec over trials (speed-up over the same model's fold 1"
              + (", achieved FLOP/s as % of the matmul peak)." if machine else ").")
              + " Rows marked (phi): the compound-scaled baseline, whose column is phi, not f.", ""]
    for group, part in table.groupby(GROUP, sort=False):
        backend, precision, device, batch = group
        peak = machine["matmul_flops"].get(precision) if machine else None
        folds = sorted(part["Fold"].unique())
        lines += [f"## {backend}, {precision}, {device}, batch {batch}", "",
                  "| Model | " + " | ".join(f"f={f}" for f in folds) + " |",
                  "|---|" + "---:|" * len(folds)]
        for model, rows in part.groupby("Model", sort=False):
            cells = []
            for fold in folds:
                hit = rows[rows["Fold"] == fold]
                if hit.empty:
                    cells.append("")
                    continue
                r = hit.iloc[0]
                extra = f"{r['Speed-up']:.2f}x" + (f", {100 * r['FLOPs/sec'] / peak:.0f}%" if peak else "")
                cells.append(f"{r['Throughput']:,.0f} ({extra})")
            name = model + (" (phi)" if rows["Mode"].iloc[0] == "EfficientNet" else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_throughput(table, path):
    groups = list(table.groupby(GROUP, sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 5), squeeze=False)
    models = sweep_models()
    tasks = list(dict.fromkeys(task.name for task, _ in models.values()))
    colours = plt.get_cmap("tab20").colors
    for ax, (group, part) in zip(axes[0], groups):
        for i, (model, rows) in enumerate(part.groupby("Model", sort=False)):
            rows = rows.sort_values("Fold")
            task, kind = models.get(model, (None, "folded"))  # None: a user's model (--model_file)
            style = "--" if kind == "efficientnet" else "-"  # a baseline shares its game CNN's colour
            colour = colours[(tasks.index(task.name) if task else len(tasks) + i) % len(colours)]
            ax.plot(rows["Fold"], rows["Throughput"], style, marker="o", label=model, color=colour)
        ax.set(xlabel="fold f (phi for the efficientnet baselines)", ylabel="images / sec (median)",
               yscale="log", title=", ".join(str(g) for g in group))
        ax.set_xticks(sorted(part["Fold"].unique()))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def intensity(model, mode, fold, batch_size, precision):
    task, _ = sweep_models()[model]
    mode = MODE_OF_NAME[mode]
    inputs = batch_size // fold if mode == "folded" else batch_size
    return arithmetic_intensity(task, fold, mode, inputs, BYTES_PER_ELEMENT[precision])


def plot_roofline(table, machine, path):
    groups = list(table.groupby(GROUP, sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 5), squeeze=False)
    bandwidth = machine["bandwidth_bytes_per_sec"]
    for ax, (group, part) in zip(axes[0], groups):
        precision = group[1]
        peak = machine["matmul_flops"].get(precision)
        if peak is None:  # a machine record without this precision's peak: no roof to draw
            ax.set_title(f"no {precision} peak in the machine record: " + ", ".join(str(g) for g in group))
            continue
        part = part[part["Model"].isin(sweep_models())]  # ai.py's intensity exists for the registry's models only
        if part.empty:
            ax.set_title("no model of the registry (ai.py has no intensity for the others): " +
                         ", ".join(str(g) for g in group))
            continue
        ais = [intensity(r["Model"], r["Mode"], r["Fold"], r["Batch Size"], precision) for _, r in part.iterrows()]
        lo, hi = min(ais + [peak / bandwidth]) / 2, max(ais + [peak / bandwidth]) * 2
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(xs, [min(peak, x * bandwidth) for x in xs], "k-", label="roof: measured matmul peak / bandwidth")
        markers = {1: "o", 2: "s", 3: "^", 4: "D"}
        for fold in sorted(part["Fold"].unique()):
            pick = [(a, f) for a, (_, r), f in zip(ais, part.iterrows(), part["FLOPs/sec"]) if r["Fold"] == fold]
            ax.scatter([a for a, _ in pick], [f for _, f in pick], marker=markers.get(fold, "x"),
                       label=f"fold/phi {fold}")
        ax.set(xscale="log", yscale="log", xlabel=f"arithmetic intensity (FLOPs/byte, ai.py, {precision})",
               ylabel="achieved FLOP/s (median)", title=f"{machine['name']}: " + ", ".join(str(g) for g in group))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


