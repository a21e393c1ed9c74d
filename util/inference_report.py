"""Summarise an inference sweep: what folding buys, per model, from run_inference.sh's CSV.

Writes, into --out (default: <csv name>-report/ beside the CSV, where the sweep keeps its machine.json):
  report.md     the machine record in brief, then per backend/precision/device/batch size one table of
                the FoldedCNNs (columns: the folds measured) and one of the compound-scaled baselines
                (columns: the phis measured): median images/sec over trials, the speed-up over the
                same model's f=1 (phi=1), and the achieved FLOP/s as % of the measured matmul probe
                (util/peak.py: one large matmul, a reference and not a ceiling; a convolution can beat it)
  speedup.png   the headline: speed-up over f=1 per model, bars for each fold measured (baselines
                hatched), a line at 1.0 and the paper's "up to 2.5x"
  roofline.png  achieved FLOP/s against arithmetic intensity (ai.py), every point labelled, under the
                measured matmul probe and bandwidth of the precision measured
Without a machine file the table leaves out "% of matmul probe" and the roofline is not drawn.
"""
import argparse
import json
import statistics
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from models.flops import arithmetic_intensity
from util.core.cli import markdown_table, one_line_errors, run_command
from util.core.files import write_text_atomic
from util.measure.benchmark import sweep_models
from util.runtime.int8 import INT8_FEATURES
from util.measure.compare import choose_within, ratio, speedups
from util.measure.latency import BOUNDS_MS, curves, saturation_batch
from util.measure.results_csv import MODE_OF_NAME, check_results_file, load, machine_file, report_dir, trial_note

GROUP = ["Backend", "Precision", "Device", "Batch Size", "Timing"]  # latency rows (batches timed one by one) apart
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
PAPER_SPEEDUP = 2.5  # the paper: up to 2.5x the original's throughput (V100 and T4 GPUs, TensorRT fp16)
FOLD_COLOURS = {1: "#9e9e9e", 2: "#9ecae1", 3: "#4292c6", 4: "#08519c"}
BASELINE_COLOUR = "#e6550d"
KINDS = (("folded", "FoldedCNNs", "f"), ("efficientnet", "Compound-scaled baselines", "phi"))


def median_table(frame):
    """Median throughput and FLOP/s over trials, one row per configuration, with the speed-up over fold (phi) 1
    of the same model, backend, precision, device and batch size; `Kind` is folded or efficientnet, `Key` the
    model's name in the CSV and `Model` its name in the report (aligned FoldedCNNs: "<name> (align N)")."""
    keys = GROUP + ["Model", "Mode", "Fold", "Align"]
    table = frame.groupby(keys, sort=False)[["Throughput", "FLOPs/sec"]].median().reset_index()
    table["Trials"] = frame.groupby(keys, sort=False)["Trial"].count().to_numpy()
    table["Key"] = table["Model"]
    table["Model"] = [key if align == 1 else f"{key} (align {align})"
                      for key, align in zip(table["Key"], table["Align"])]
    table["Speed-up"] = table["Low"] = table["High"] = float("nan")
    per_trial = {key: dict(zip(rows["Trial"], rows["Throughput"])) for key, rows in frame.groupby(keys, sort=False)}
    lookup = [name if name != "Model" else "Key" for name in keys]  # the CSV's key columns, Model as in the CSV
    for _, part in table.groupby(GROUP + ["Key"], sort=False):
        originals = part.index[part["Fold"] == 1]  # f=1 (phi=1) of the same model
        if len(originals):
            for index, value in speedups(part["Throughput"].to_dict(), base=originals[0]).items():
                table.loc[index, "Speed-up"] = value
                spread = trial_ratio(per_trial, table.loc[index, lookup], table.loc[originals[0], lookup])
                if spread and spread.trials > 1:
                    table.loc[index, ["Low", "High"]] = spread.low, spread.high
    table["Kind"] = ["efficientnet" if mode == "EfficientNet" else "folded" for mode in table["Mode"]]
    return table


def trial_ratio(per_trial, row, base):
    """The Ratio (util/measure/compare.py) of configuration `row` over `base` (their key columns), the trials paired
    by number; None when they share none."""
    a, b = per_trial[tuple(row)], per_trial[tuple(base)]
    shared = sorted(set(a) & set(b))
    return ratio({"row": [a[t] for t in shared], "base": [b[t] for t in shared]}, "row", "base")


def group_title(group):
    backend, precision, device, batch, timing = group
    return f"{backend}, {precision}, {device}, batch {batch}" + (", batches timed one by one" if timing == "latency"
                                                                 else "")


def machine_summary(machine):
    """The machine record in a few lines: what ran the sweep and its measured ceilings."""
    if not machine:
        return ["Machine: not recorded (no machine.json beside the CSV), so no % of matmul probe and no roofline."]
    features = [name for name, present in machine.get("cpu_features", {}).items() if present]
    software = ", ".join(f"{k} {machine[k]}" for k in ("python", "torch", "onnxruntime", "openvino") if machine.get(k))
    peaks = ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in machine["matmul_flops"].items())
    host = ", ".join([machine.get("cpu", "CPU")] + [f"{machine[k]} {what}" for k, what in
                                                    (("cpu_cores", "cores"), ("torch_threads", "torch threads"))
                                                    if k in machine])
    lines = [f"- Machine: {machine['gpu']} (host: {host})" if machine.get("gpu") else
             f"- Machine: {host}" if "cpu" in machine else f"- Machine: {machine['name']}"]
    if features:
        lines.append("- CPU instruction sets: " + ", ".join(features))
    if software:
        lines.append(f"- Software: {software}")
    lines.append(f"- Measured matmul probe (one large matmul; a reference, not a ceiling): {peaks}; memory bandwidth "
                 f"{machine['bandwidth_bytes_per_sec'] / 1e9:.1f} GB/s (util/peak.py)")
    return lines


def int8_note(machine):
    """What an int8 table measured: how the models were quantized and calibrated, and which instructions ran them."""
    features = machine.get("cpu_features", {}) if machine else {}
    used = [name for name in INT8_FEATURES if features.get(name)]
    instructions = (", ".join(used) if used else "none: this CPU has no VNNI, so ONNX Runtime ran its slower AVX2 "
                    "int8 kernels") if features else "not recorded"
    bits = "8" if used else "7" if features else "7 or 8"
    return (f"int8: ONNX Runtime static quantization (QDQ; int8 weights per output channel in {bits} bits, uint8 "
            "activations per tensor), calibrated on random inputs (standard normal) of each model's input shape, since the weights "
            "are random too: throughput, not accuracy (`util/export.py CHECKPOINT out.onnx --int8` checks a trained "
            f"model on its test images). int8 dot-product instructions: {instructions}.")


def kind_table(rows, peak, letter):
    """One markdown table: a row per model; images/sec and speed-up for each fold (phi) measured, % of the matmul probe."""
    folds = sorted(rows["Fold"].unique())
    header = ["Model"] + [f"{letter}={f} img/s" if f == 1 else f"{letter}={f} img/s (speed-up)" for f in folds]
    if peak:
        header.append("% of matmul probe (" + " / ".join(f"{letter}={f}" for f in folds) + ")")
    body = []
    for model, part in rows.groupby("Model", sort=False):
        by_fold = {r["Fold"]: r for _, r in part.iterrows()}
        key, align = part["Key"].iloc[0], part["Align"].iloc[0]
        original = rows[(rows["Key"] == key) & (rows["Fold"] == 1)]
        cells = [model]
        for f in folds:
            r = by_fold.get(f)
            if r is None and f == 1 and align > 1 and not original.empty:  # f=1 is the original: no widths to align
                cells.append(f"{original['Throughput'].iloc[0]:,.0f} (the original's)")
            elif r is None:
                cells.append("not measured")
            elif f == 1:
                cells.append(f"{r['Throughput']:,.0f}")
            elif r["Speed-up"] != r["Speed-up"]:  # NaN: no f=1 of this model measured
                cells.append(f"{r['Throughput']:,.0f} (no {letter}=1)")
            else:
                spread = f", {r['Low']:.2f}-{r['High']:.2f}" if r["Low"] == r["Low"] else ""
                cells.append(f"{r['Throughput']:,.0f} ({r['Speed-up']:.2f}x{spread})")
        if peak:
            cells.append(" / ".join(f"{100 * by_fold[f]['FLOPs/sec'] / peak:.0f}" if f in by_fold else "-"
                                    for f in folds))
        body.append(cells)
    return "\n".join(markdown_table(header, body))


def markdown(table, machine, frame):
    """The report: the machine in brief, then per backend/precision/device/batch size a table per kind of model
    (`table`: medians of the sweep's rows `frame`)."""
    lines = ["# Inference throughput", ""] + machine_summary(machine) + [
        "", "Cells: median images/sec over trials; in brackets the speed-up over the same model's f=1 (phi=1 for a "
        "baseline), same backend, precision, device and batch size, and the range of the per-trial ratio (trials "
        "paired by number: a sweep measures a model's folds interleaved); a range that holds 1.00 is a tie. "
        "f = images per folded input; phi = the "
        "compound-scaled baseline's scaling step. Only the folds measured have a column."
        + (" % of matmul probe: achieved FLOP/s over the large matmul that util/peak.py times in the precision, a "
           "reference and not a ceiling: tuned convolution kernels can beat it (over 100)." if machine else ""), ""]
    for group, part in table.groupby(GROUP, sort=False):
        peak = machine["matmul_flops"].get(group[1]) if machine else None
        lines += [f"## {group_title(group)}", ""]
        said = trial_note(frame[(frame[GROUP] == pd.Series(group, index=GROUP)).all(axis=1)])
        if said:
            lines += [f"**These rows are {said}.**", ""]
        if group[1] == "int8":
            lines += [int8_note(machine), ""]
        for kind, title, letter in KINDS:
            rows = part[part["Kind"] == kind]
            if not rows.empty:
                lines += [f"### {title}", "", kind_table(rows, peak, letter), ""]
    return "\n".join(lines).rstrip()


def short_name(key, align=1):
    """A model's label on a figure: the task's last name part (the CSV's own name for a user's model)."""
    task, _ = sweep_models().get(key, (None, None))
    return (task.name if task else key).split("/")[-1] + (f" align{align}" if align > 1 else "")


def speedup_bars(ax, part):
    """Grouped bars on one axis: per FoldedCNN, one bar per fold > 1; its task's baseline (phi > 1) hatched
    beside it."""
    models = sweep_models()
    folded = part[(part["Kind"] == "folded") & (part["Fold"] > 1)]
    baselines = part[(part["Kind"] == "efficientnet") & (part["Fold"] > 1)]
    folds, phis = sorted(folded["Fold"].unique()), sorted(baselines["Fold"].unique())
    keys = dict(zip(part["Model"], zip(part["Key"], part["Align"])))
    task_of = {m: models[key][0].name for m, (key, align) in keys.items() if key in models and align == 1}
    slots = []  # x positions: one group per FoldedCNN model, its baseline joins the group of the same task
    for model in dict.fromkeys(folded["Model"]):
        slots.append((short_name(*keys[model]), [("folded", model)]))
    for model in dict.fromkeys(baselines["Model"]):
        group = next((s for s in slots if any(m in task_of and task_of.get(m) == task_of.get(model)
                                              for _, m in s[1])), None)
        if group:
            group[1].append(("efficientnet", model))
        else:
            slots.append((short_name(*keys[model]), [("efficientnet", model)]))
    width = min(0.25, 0.8 / max(1, len(folds) + len(phis)))
    drawn = set()
    for x, (_, members) in enumerate(slots):
        bars = [(kind, model, f) for kind, model in members
                for f in (folds if kind == "folded" else phis)]
        for i, (kind, model, f) in enumerate(bars):
            source = folded if kind == "folded" else baselines
            hit = source[(source["Model"] == model) & (source["Fold"] == f)]
            if hit.empty:
                continue
            value = hit["Speed-up"].iloc[0]
            if value != value:  # NaN: no f=1 to compare with
                continue
            label = f"FoldedCNN f={f}" if kind == "folded" else f"compound-scaled baseline phi={f}"
            style = ({"color": FOLD_COLOURS.get(f, "#6a51a3")} if kind == "folded" else
                     {"color": "white", "edgecolor": BASELINE_COLOUR, "hatch": "///"})
            xpos = x - 0.4 + width * (i + 0.5)
            ax.bar(xpos, value, width, label=None if label in drawn else label, **style)
            drawn.add(label)
            ax.text(xpos, value, f"{value:.2f}", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.axhline(1.0, color="black", linewidth=1, label="f=1: the original CNN")
    ax.axhline(PAPER_SPEEDUP, color="#31a354", linewidth=1, linestyle="--",
               label=f"paper: up to {PAPER_SPEEDUP}x (GPUs, TensorRT fp16)")
    ax.set_xticks(range(len(slots)), [name for name, _ in slots], rotation=30, ha="right", fontsize=8)
    if not drawn:
        ax.text(0.5, 0.5, "no speed-up to draw: no fold > 1 with its f=1 measured", transform=ax.transAxes,
                ha="center")
    top = max([PAPER_SPEEDUP] + list(part["Speed-up"].dropna()))
    ax.set_ylim(0, top * 1.4)  # room for the legend above the paper's line
    ax.set_ylabel("speed-up over f=1 (ratio of median images/sec)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=3)


def plot_speedup(table, machine, path):
    """One panel per backend/precision/device/batch size, stacked, the models in registry order in each."""
    order = {name: i for i, name in enumerate(sweep_models())}
    table = table.sort_values("Key", key=lambda names: names.map(lambda n: order.get(n, len(order))), kind="stable")
    groups = list(table.groupby(GROUP, sort=False))
    width = max(7.0, 0.95 * table["Model"].nunique())
    fig, axes = plt.subplots(len(groups), 1, figsize=(width, 4.8 * len(groups)), squeeze=False)
    where = machine["name"] if machine else groups[0][0][2]
    for ax, (group, part) in zip(axes[:, 0], groups):
        speedup_bars(ax, part)
        ax.set_title(f"What folding buys on {where}: {group_title(group)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def intensity(key, mode, fold, batch_size, precision, align=1):
    task, _ = sweep_models()[key]
    mode = MODE_OF_NAME[mode]
    inputs = batch_size // fold if mode == "folded" else batch_size
    return arithmetic_intensity(task, fold, mode, inputs, BYTES_PER_ELEMENT[precision], align)


def place_labels(ax, xy, labels, fontsize=5.5):
    """Label every point where its text overlaps no other label or point: the nearest free spot of a few rings
    around it (a thin line leads to labels set further out)."""
    ax.figure.tight_layout()  # the final geometry, so the pixel boxes below hold in the saved figure
    to_pixels = ax.transData.transform
    scale = ax.figure.dpi / 72  # points to pixels
    centres = [tuple(to_pixels(p)) for p in xy]
    taken = [(x - 4 * scale, y - 4 * scale, x + 4 * scale, y + 4 * scale) for x, y in centres]  # the markers
    directions = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]
    for (x, y), (px, py), text in sorted(zip(xy, centres, labels), key=lambda item: item[1]):
        w, h = 0.58 * fontsize * len(text) * scale, 1.25 * fontsize * scale
        best = None
        for radius in (5, 11, 18, 27, 38, 52):
            for dx, dy in directions:
                cx, cy = px + dx * radius * scale, py + dy * radius * scale
                box = (cx - (0 if dx > 0 else w if dx < 0 else w / 2), cy - (0 if dy > 0 else h if dy < 0 else h / 2))
                box = box + (box[0] + w, box[1] + h)
                if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                    best = (box, radius, dx, dy)
                    break
            if best:
                break
        if best is None:  # nowhere free: the first spot, overlapping
            box = (px + 5 * scale, py, px + 5 * scale + w, py + h)
            best = (box, 5, 1, 1)
        box, radius, dx, dy = best
        taken.append(box)
        anchor = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        ax.annotate(text, (x, y), xytext=ax.transData.inverted().transform(anchor), textcoords="data",
                    fontsize=fontsize, ha="center", va="center", color="#333333",
                    arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.4} if radius > 11 else None)


def roofline_axis(ax, part, peak, bandwidth, precision):
    """Every registry model's point under the ceilings; FoldedCNNs and baselines in legends of their own."""
    points = [(intensity(r["Key"], r["Mode"], r["Fold"], r["Batch Size"], precision, r["Align"]), r["FLOPs/sec"], r)
              for _, r in part.iterrows()]
    ais = [a for a, _, _ in points]
    lo, hi = min(ais + [peak / bandwidth]) / 1.5, max(ais + [peak / bandwidth]) * 1.5
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    roof_handles = [
        ax.plot(xs, [min(peak, x * bandwidth) for x in xs], "k-", linewidth=1.5,
                label=f"{precision} matmul probe {peak / 1e9:.0f} GFLOP/s (util/peak.py; a reference, not a ceiling)")[0],
        ax.plot(xs, [x * bandwidth for x in xs], "k:", linewidth=1,
                label=f"memory bandwidth {bandwidth / 1e9:.1f} GB/s (measured)")[0]]
    markers = {1: "o", 2: "s", 3: "^", 4: "D"}
    handles = {"folded": {}, "efficientnet": {}}
    for a, flops, r in points:
        kind, f = r["Kind"], r["Fold"]
        if kind == "folded":
            style = {"color": FOLD_COLOURS.get(f, "#6a51a3"), "edgecolors": "black", "linewidths": 0.4}
        else:
            style = {"facecolors": "none", "edgecolors": BASELINE_COLOUR, "linewidths": 1.2}
        handles[kind][f] = ax.scatter([a], [flops], marker=markers.get(f, "x"), s=36, zorder=3, **style)
    flops_all = [f for _, f, _ in points]
    ax.set(xscale="log", yscale="log", xlabel=f"arithmetic intensity (FLOPs/byte, ai.py, {precision})",
           ylabel="achieved GFLOP/s (median)", xlim=(lo, hi),
           ylim=(min(flops_all + [peak]) / 1.6, max(flops_all + [peak]) * 1.6))
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    giga = FuncFormatter(lambda v, _: f"{v / 1e9:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.yaxis.set_major_formatter(giga)
    ax.yaxis.set_minor_formatter(giga)
    ax.tick_params(which="minor", labelsize=6)
    labels = [f"{short_name(r['Key'], r['Align'])} {'f' if r['Kind'] == 'folded' else 'phi'}{r['Fold']}"
              for _, _, r in points]
    place_labels(ax, [(a, f) for a, f, _ in points], labels)
    ax.grid(True, which="both", alpha=0.25)
    first = ax.legend(handles=roof_handles, fontsize=7, loc="lower right", title="ceilings", title_fontsize=7)
    ax.add_artist(first)
    legend_at = {"folded": "upper left", "efficientnet": "lower left"}
    for kind, title, letter in KINDS:
        if handles[kind]:
            legend = ax.legend([handles[kind][f] for f in sorted(handles[kind])],
                               [f"{letter}={f}" for f in sorted(handles[kind])], fontsize=7, title=title,
                               title_fontsize=7, loc=legend_at[kind], ncol=len(handles[kind]))
            ax.add_artist(legend)


def plot_roofline(table, machine, path):
    groups = list(table.groupby(GROUP, sort=False))
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 7 * len(groups)), squeeze=False)
    bandwidth = machine["bandwidth_bytes_per_sec"]
    for ax, (group, part) in zip(axes[:, 0], groups):
        precision = group[1]
        peak = machine["matmul_flops"].get(precision)
        part = part[part["Key"].isin(sweep_models())]  # ai.py's intensity exists for the registry's models only
        if peak is None:  # a machine record without this precision's peak: no roof to draw
            ax.set_title(f"no {precision} peak in the machine record: {group_title(group)}")
        elif part.empty:
            ax.set_title(f"no model of the registry (ai.py has no intensity for the others): {group_title(group)}")
        else:
            roofline_axis(ax, part, peak, bandwidth, precision)
            ax.set_title(f"Roofline on {machine['name']}: {group_title(group)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def bound_rows(curve, bounds=BOUNDS_MS):
    """One row per latency bound: the (fold, batch) to take within it (compare.choose_within), its images/sec and
    p99, and its gain over the best f=1 point within the same bound with that gain's range over the trials."""
    rows = []
    for bound in bounds:
        choice = choose_within(curve.trials, curve.p99_ms, bound)
        if choice is None:
            smallest = min(curve.p99_ms.values())
            rows.append([f"{bound:g}", "nothing fits", "", "", f"smallest p99 measured {smallest:.3g} ms", ""])
            continue
        fold, batch = choice.pick
        gain = choice.gain
        gain_text = ("f=1 is the pick" if fold == 1 else "no f=1 point fits" if gain is None else
                     f"{gain.median:.2f}x" + gain.spread())
        rows.append([f"{bound:g}", f"f={fold}", str(batch), f"{statistics.median(curve.trials[choice.pick]):,.0f}",
                     f"{curve.p99_ms[choice.pick]:.3g}", gain_text])
    return rows


def bound_summary(rows, bounds=BOUNDS_MS):
    """Every curve's pick side by side, one table per bound, from `rows` ({curve key: its bound_rows})."""
    lines = []
    for i, bound in enumerate(bounds):
        lines += [f"## Every model within p99 {bound:g} ms", ""]
        header = ["model", "backend, precision", "fold", "batch", "images/sec", "p99 (ms)", "gain over f=1"]
        lines += markdown_table(header, [[model, f"{backend}, {precision}", *picks[i][1:]]
                                         for (model, backend, precision, _), picks in rows.items()]) + [""]
    return lines


def latency_markdown(found):
    """The report's latency section: per curve, the saturation batch of each fold and the table per bound."""
    lines = ["# Throughput at a latency bound", "",
             "Rows timed batch by batch (`--latency`, `--curve`): images/sec are those synchronised batches'; p99 is the "
             "median over trials of each trial's 99th percentile (nearest rank). Compute latency only: a folded model "
             "also waits for its f images (arriving one by one at R a second, (f - 1) / R seconds more). Within each "
             "bound the point with the most images/sec is taken, the smaller fold (then batch) where two tie within the "
             "trials' spread (a folded point tied with f=1's gives way to it); the gain is over the best f=1 point "
             "within the same bound.", ""]
    rows = {key: bound_rows(curve) for key, curve in found.items()}
    if len(found) > 1:
        lines += bound_summary(rows)
    for (model, backend, precision, device), curve in found.items():
        lines += [f"## {model}: {backend}, {precision}, {device}", ""]
        saturation = {f: saturation_batch(curve.by_batch(f)) for f in curve.folds()}
        lines += ["Saturation batch (the smallest within 10% of the fold's best images/sec): "
                  + ", ".join(f"f={f} {b} ({curve.by_batch(f)[b]:,.0f} images/sec)" for f, b in saturation.items()),
                  ""]
        lines += markdown_table(["p99 bound (ms)", "fold", "batch", "images/sec", "p99 (ms)", "gain over f=1"],
                                rows[(model, backend, precision, device)]) + [""]
    return "\n".join(lines).rstrip()


def plot_latency(found, path):
    """One panel per curve: images/sec against p99 latency, log axes, one line per fold, batch 1024 marked."""
    fig, axes = plt.subplots(len(found), 1, figsize=(7, 4.5 * len(found)), squeeze=False)
    for ax, ((model, backend, precision, device), curve) in zip(axes[:, 0], found.items()):
        for fold in curve.folds():
            points = sorted(k for k in curve.trials if k[0] == fold)
            xs = [curve.p99_ms[k] for k in points]
            ys = [statistics.median(curve.trials[k]) for k in points]
            (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=f"f={fold}")
            for k, x, y in zip(points, xs, ys):
                if k[1] == 1024:
                    ax.plot([x], [y], marker="*", markersize=12, color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("p99 latency per batch (ms)")
        ax.set_ylabel("images/sec")
        ax.set_title(f"{model}: {backend}, {precision}, {device} (star: batch 1024)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="results CSV written by ./run_inference.sh")
    parser.add_argument("--machine", help="peak JSON (util/peak.py); default: <csv name>-report/machine.json")
    parser.add_argument("--out", help="folder for report.md and the plots; default: <csv name>-report/ beside the CSV")
    args = parser.parse_args(argv)
    machine_path = Path(args.machine) if args.machine else machine_file(args.csv)
    out = Path(args.out) if args.out else report_dir(args.csv)
    with one_line_errors(parser, (ValueError, OSError)):
        check_results_file(args.csv)
        frame = load(args.csv)
        found = curves(frame)
        frame = frame[frame["Timing"] != "latency"]  # timed batch by batch: the latency section's
        table = median_table(frame) if len(frame) else None
        machine = None
        if machine_path.is_file():
            machine = json.loads(machine_path.read_text())
        elif args.machine:
            raise ValueError(f"--machine {args.machine} does not exist: "
                             f"measure it with python3 util/peak.py --out {args.machine}")
        out.mkdir(parents=True, exist_ok=True)
    sections, written = [], ["report.md"]
    if table is not None:
        sections.append(markdown(table, machine, frame))
        plot_speedup(table, machine, out / "speedup.png")
        written.append("speedup.png")
        if machine:
            plot_roofline(table, machine, out / "roofline.png")
            written.append("roofline.png")
    if found:
        sections.append(latency_markdown(found))
        plot_latency(found, out / "latency.png")
        written.append("latency.png")
    write_text_atomic(out / "report.md", "\n\n".join(sections) + "\n")
    said = [] if table is None else [f"{len(table)} configurations of {table['Model'].nunique()} model(s), medians "
                                     f"of {int(table['Trials'].sum())} trials"]
    said += [f"{len(found)} latency curve(s)"] if found else []
    print(f"wrote {', '.join(str(out / w) for w in written)}: {'; '.join(said)}")


if __name__ == "__main__":
    run_command(main)
