"""Summarise an inference sweep: a markdown table and PNG plots from run_inference.sh's CSV.

Writes, into --out (default: the CSV's folder):
  report.md       per model x fold: median images/sec over trials, the speed-up over the same
                  model's original (fold 1, or phi 1 for a baseline) and the achieved FLOP/s as a
                  percentage of the machine's measured matmul peak (<csv>.machine.json)
  throughput.png  median images/sec vs fold, one line per model
  roofline.png    achieved FLOP/s vs arithmetic intensity (ai.py) under the measured peak and
                  memory bandwidth
Without a machine file the table leaves out "% of peak" and the roofline is not drawn.
"""
import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ai import arithmetic_intensity  # noqa: E402
from util.common import write_text_atomic  # noqa: E402
from util.run_inference import HEADER, machine_file, read_rows, sweep_models  # noqa: E402

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
        for model, rows in part.groupby("Model", sort=False):
            rows = rows.sort_values("Fold")
            task, kind = models[model]
            style = "--" if kind == "efficientnet" else "-"  # a baseline shares its game CNN's colour
            ax.plot(rows["Fold"], rows["Throughput"], style, marker="o", label=model,
                    color=colours[tasks.index(task.name) % len(colours)])
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
    mode = {"Original": "original", "Folded": "folded", "EfficientNet": "efficientnet"}[mode]
    inputs = batch_size // fold if mode == "folded" else batch_size
    return arithmetic_intensity(task, fold, mode, inputs, BYTES_PER_ELEMENT[precision])


def plot_roofline(table, machine, path):
    groups = list(table.groupby(GROUP, sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 5), squeeze=False)
    bandwidth = machine["bandwidth_bytes_per_sec"]
    for ax, (group, part) in zip(axes[0], groups):
        precision = group[1]
        peak = machine["matmul_flops"][precision]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="results CSV written by ./run_inference.sh")
    parser.add_argument("--machine", help="peak JSON (util/peak.py); default: <csv name>.machine.json beside the CSV")
    parser.add_argument("--out", help="folder for report.md and the plots; default: the CSV's folder")
    args = parser.parse_args(argv)
    machine_path = Path(args.machine) if args.machine else machine_file(args.csv)
    out = Path(args.out) if args.out else Path(args.csv).resolve().parent
    try:
        if not Path(args.csv).is_file():
            raise ValueError(f"{args.csv} does not exist: run ./run_inference.sh {args.csv} first")
        table = medians(load(args.csv))
        machine = None
        if machine_path.is_file():
            machine = json.loads(machine_path.read_text())
        elif args.machine:
            raise ValueError(f"--machine {args.machine} does not exist: "
                             f"measure it with python3 util/peak.py --out {args.machine}")
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    write_text_atomic(out / "report.md", markdown(table, machine) + "\n")
    plot_throughput(table, out / "throughput.png")
    written = ["report.md", "throughput.png"]
    if machine:
        plot_roofline(table, machine, out / "roofline.png")
        written.append("roofline.png")
    print("wrote " + ", ".join(str(out / w) for w in written))


if __name__ == "__main__":
    main()
