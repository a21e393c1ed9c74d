"""Which fold to deploy: hardware-aligned widths (--align), --fold auto, and util/choose_fold.py."""
import csv
import json
import sys

import pytest
import torch
from torch import nn

from config.tasks import task_names
from models import build_model, fold_cnn
from models.flops import count_flops
from util.train.checkpoint import load_classifier
from helpers import run_cli, train_args, trainer_args, write_image_folder

BEFORE_LATENCY = "Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec,Backend,Precision,Device,Chunk,Align,Timing"
HEADER = BEFORE_LATENCY + ",Latency p50 (ms),Latency p99 (ms),Timed Batches"
NO_LATENCY = ",,,"  # a throughput row's empty latency columns


def widths(model):
    """Output widths of every Conv2d and Linear, in order (the last is the logits layer)."""
    return [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("task", task_names())
@pytest.mark.parametrize("fold", [2, 3])
@pytest.mark.parametrize("align", [8, 16])
def test_aligned_widths_are_multiples_of_n_and_never_narrower(task, fold, align):
    paper, _ = build_model(task, fold)
    aligned, shape = build_model(task, fold, align=align)
    assert shape == build_model(task, fold)[1]  # the input is f*C channels either way
    *inner_paper, head_paper = widths(paper)
    *inner, head = widths(aligned)
    assert head == head_paper  # the logits stay f*K
    assert all(w % align == 0 and w >= p for w, p in zip(inner, inner_paper))
    aligned(torch.rand(2, *shape))  # the widths fit together


def test_align_leaves_the_original_and_is_refused_where_it_means_nothing():
    assert widths(build_model("sot/timer3", 1, align=16)[0]) == widths(build_model("sot/timer3", 1)[0])
    assert count_flops("sot/timer3", 2, align=16) > count_flops("sot/timer3", 2)
    with pytest.raises(ValueError, match="drop the multiplier and align"):
        build_model("sot/timer3", 2, "efficientnet", align=8)
    with pytest.raises(ValueError, match="align must be a positive integer"):
        build_model("sot/timer3", 2, align=0)


def test_fold_cnn_aligns_a_users_model():
    model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.ReLU(), nn.Conv2d(10, 20, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 5))
    folded = fold_cnn(model, 2, example_input=torch.rand(2, 3, 16, 16), align=16)
    assert widths(folded.net) == [16, 32, 10]
    assert folded(torch.rand(4, 3, 16, 16)).shape == (4, 5)


def test_fold_cnn_aligns_a_grouped_conv_to_both():
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.ReLU(), nn.Conv2d(12, 20, 3, groups=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 5))
    folded = fold_cnn(model, 2, example_input=torch.rand(2, 3, 16, 16), align=8)
    grouped = [m for m in folded.net.modules() if isinstance(m, nn.Conv2d)][1]
    assert (grouped.groups, grouped.in_channels, grouped.out_channels) == (2, 16, 32)  # int(20 sqrt 2) = 28 -> 32


@pytest.mark.slow
def test_flop_count_with_align_and_the_paper_table_kept(tmp_path):
    done = run_cli("./flop_count.sh", "--align", "16")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["noscope_coral"]["fold2_ops"] == count_flops("noscope-coral", 2, align=16)
    assert counts["noscope_coral"]["og_ops"] == count_flops("noscope-coral", 1, "original")
    assert "efficientnet-game_sot/timer3" not in counts
    refused = run_cli("./flop_count.sh", "--align", "16", "--write")
    assert refused.returncode == 2 and "keeps the paper's table" in refused.stderr
    written = run_cli("./flop_count.sh", "--align", "8", "--write", tmp_path / "aligned.json")
    assert written.returncode == 0 and json.loads((tmp_path / "aligned.json").read_text())["noscope_coral"]


def test_fold_auto_measures_every_fold_and_names_the_fastest():
    done = run_cli(sys.executable, "infer.py", "noscope-coral", "--fold", "auto", "--folds", "1", "2", "--align", "8",
                   "--batch_size", "8", "--min_time", "0", "--warmup", "0", "--backend", "eager", "--device", "cpu",
                   "--json", "--trials", "2")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    trials, summary = lines[:-1], lines[-1]
    assert [(t["fold"], t["align"], t["trial"]) for t in trials] == [(1, 1, 0), (2, 8, 0), (1, 1, 1), (2, 8, 1)]
    assert trials[1]["flops_per_sec"] / trials[1]["images_per_sec"] == pytest.approx(
        count_flops("noscope-coral", 2, align=8) / 2, rel=1e-6)  # counted from the aligned model
    speeds = summary["images_per_sec"]
    from util.measure.compare import choose as take
    assert summary["fold_to_take"] == take({int(f): t for f, t in summary["trials"].items()})
    assert set(speeds) == {"1", "2"} and all(len(t) == 2 for t in summary["trials"].values())
    text = run_cli(sys.executable, "infer.py", "noscope-coral", "--fold", "auto", "--folds", "1", "2",
                   "--batch_size", "8", "--min_time", "0", "--warmup", "0", "--backend", "eager", "--device", "cpu")
    assert text.returncode == 0 and text.stdout.splitlines()[-1].startswith("fold to take: f=")
    bad = run_cli(sys.executable, "infer.py", "sot/timer3", "--fold", "auto", "--mode", "efficientnet")
    assert bad.returncode == 2 and "drop --mode efficientnet" in bad.stderr
    alone = run_cli(sys.executable, "infer.py", "sot/timer3", "--folds", "1", "2")
    assert alone.returncode == 2 and "--folds goes with --fold auto" in alone.stderr


def test_an_aligned_run_trains_into_its_own_folder_and_reloads(tmp_path):
    plan = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "noscope-coral", "--folds", "2",
                   "--align", "16", "--dry_run")
    assert plan.returncode == 0, plan.stderr
    resolved = json.loads(plan.stdout)
    assert resolved["align"] == 16 and resolved["savedir"].endswith("fold2/multiplier1.414-align16/fold")
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    result = train_args(trainer_args(tmp_path / "run", "noscope-coral", 2, 1, data_dir=tmp_path / "data",
                                            align=16))
    assert result["align"] == 16
    classifier, _ = load_classifier(tmp_path / "run" / "best.pth")
    assert widths(classifier.net) == widths(build_model("noscope-coral", 2, align=16)[0])
    with pytest.raises(ValueError, match="align 16, not noscope-coral, fold 2, multiplier .*align 1"):
        train_args(trainer_args(tmp_path / "other", "noscope-coral", 2, 1, data_dir=tmp_path / "data",
                                       continue_from_file=tmp_path / "run" / "current.pth"))
    with pytest.raises(ValueError, match="trained with --slot_balance off: resume it with --slot_balance off"):
        train_args(trainer_args(tmp_path / "other", "noscope-coral", 2, 2, data_dir=tmp_path / "data",
                                       align=16, slot_balance="on",
                                       continue_from_file=tmp_path / "run" / "current.pth"))


def test_a_sweep_before_the_align_column_resumes_with_it_added(tmp_path):
    old = tmp_path / "old.csv"
    rows = ["noscope_coral,0,1,8,Original,100.00,1.6e+09,eager,fp32,cpu,8",
            "noscope_coral,0,2,8,Folded,150.00,2.4e+09,eager,fp32,cpu,4"]
    old.write_text(BEFORE_LATENCY.rsplit(",", 2)[0] + "\n" + "\n".join(rows) + "\n")
    command = ["./run_inference.sh", old, "--models", "noscope-coral", "--folds", "1", "2", "--trials", "1",
               "--batch_sizes", "8", "--min_time", "0", "--warmup", "0", "--device", "cpu", "--no_peak",
               "--backend", "eager", "--chunk", "full"]
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert old.read_text().splitlines() == [HEADER] + [r + ",1,full" + NO_LATENCY for r in rows]  # nothing measured again, kept
    aligned = run_cli(*command, "--align", "16")
    assert aligned.returncode == 0, aligned.stderr
    new = old.read_text().splitlines()
    assert len(new) == 4 and new[-1].startswith("noscope_coral,0,2,8,Folded,") and new[-1].endswith(",16,full" + NO_LATENCY)
    assert "fold to take (eager, fp32, cpu; the fastest, or the smaller where two tie" in aligned.stderr
    assert "): noscope_coral f=" in aligned.stderr and "one trial per configuration (no spread" in aligned.stderr
    torn = tmp_path / "short.csv"
    torn.write_text(HEADER + "\nnoscope_coral,0,1,8\n"
                    + "noscope_coral,0,2,8,Folded,150.00,2.4e+09,eager,fp32,cpu,4,1,full,,,\n")
    refused = run_cli(*command[:1], torn, *command[2:])
    assert refused.returncode == 2 and "line 2 has 4 fields" in refused.stderr and torn.read_text().count("\n") == 3
    report = run_cli(sys.executable, "util/inference_report.py", old)
    assert report.returncode == 0, report.stderr
    assert "| noscope_coral (align 16) | 100 (the original's) |" in (tmp_path / "old-report" / "report.md").read_text()


def test_a_sweep_whose_last_column_was_called_protocol_reads_and_resumes_renamed(tmp_path):
    from util.measure import results_csv
    old = tmp_path / "old.csv"
    rows = ["noscope_coral,0,1,8,Original,100.00,1.6e+09,eager,fp32,cpu,8,1,quick",
            "noscope_coral,0,2,8,Folded,150.00,2.4e+09,eager,fp32,cpu,4,1,full"]
    old.write_text(BEFORE_LATENCY.replace("Timing", "Protocol") + "\n" + "\n".join(rows) + "\n")
    assert [r["Timing"] for r in results_csv.read_rows(old)] == ["quick", "full"]
    assert len(results_csv.open_results(old)) == 2
    assert old.read_text().splitlines() == [HEADER] + [r + NO_LATENCY for r in rows]  # renamed, every value kept


def write_run(savedir, dataset, fold, top1, worst=None, recipe="paper", align=1, val=None):
    """A finished run's result.json in train.py's layout."""
    leaf = "none" if fold == 1 else "distill" if recipe == "distill" else "fold"
    widths = f"multiplier{fold ** 0.5:.4g}" + (f"-align{align}" if align > 1 else "")
    folder = savedir / dataset / f"fold{fold}" / widths / leaf
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({
        "dataset": dataset, "fold": fold, "mode": "folded", "recipe": "paper" if fold == 1 else recipe,
        "align": align, "test_top1": top1, "worst_slot_test_top1": top1 if worst is None else worst,
        **({} if val is None else {"best_val_top1": val})}))


def write_speeds(path, speeds, backend="onnxruntime", align=1, precision="fp32", timing="full"):
    """A sweep CSV: {model: {fold: images/sec, or a list of them, one per trial}} (appended to one that exists)."""
    lines = [] if path.exists() else [HEADER]
    for model, folds in speeds.items():
        for fold, trials in folds.items():
            mode = "Original" if fold == 1 else "Folded"
            for trial, ips in enumerate(trials if isinstance(trials, list) else [trials]):
                lines.append(f"{model},{trial},{fold},1024,{mode},{ips},1e9,{backend},{precision},cpu,32,"
                             f"{align if fold > 1 else 1},{timing}{NO_LATENCY}")
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")


def test_a_folded_run_that_fell_far_behind_on_validation_is_named_and_never_recommended(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.90, val=0.91)
    write_run(runs, "synthetic-noscope-coral", 2, 0.89, val=0.90)
    write_run(runs, "synthetic-noscope-coral", 4, 0.60, val=0.55, recipe="distill")  # 36 points down: collapsed
    csv_path = tmp_path / "r.csv"
    write_speeds(csv_path, {"noscope_coral": {1: 1000, 2: 1500, 4: 3000}})
    done = choose(runs, csv_path, "--max_drop", "50", "--out", tmp_path / "choice")
    assert done.returncode == 0, done.stderr
    table = {int(r["fold"]): r for r in rows_of(tmp_path / "choice.csv")}
    assert table[4]["note"] == "fell far behind f=1 on validation: docs/own_cnn.md" and table[4]["recommended"] == "False"
    assert table[2]["recommended"] == "True"


def test_the_warning_of_a_run_that_fell_behind_names_both_top1s_and_what_to_try(tmp_path):
    from util.train.trainer import behind_note
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "train_top1.txt").write_text("0.500000\n0.850000\n")
    result = {"dataset": "photos", "fold": 4, "mode": "folded", "best_val_top1": 0.3, "savedir": str(tmp_path)}
    note = behind_note(result, 0.76)
    assert note.startswith("warning: photos fold 4 fell behind: best validation top-1 0.300, 46.0 points below its "
                           "teacher's 0.760 while its training top-1 reached 0.850; try more epochs (--student_epochs)")
    assert behind_note(result, 0.39) is None and behind_note({**result, "fold": 1}, 0.9) is None


def choose(*argv):
    return run_cli(sys.executable, "util/choose_fold.py", *argv)


def rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_chooser_recommends_the_fastest_fold_within_the_drop(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.990)
    write_run(runs, "synthetic-noscope-coral", 2, 0.985)                     # 0.5 points
    write_run(runs, "synthetic-noscope-coral", 3, 0.970)                     # 2.0 points
    write_run(runs, "synthetic-noscope-coral", 4, 0.950, worst=0.90)         # 4.0 points
    write_run(runs, "synthetic-noscope-coral", 4, 0.982, recipe="distill")   # 0.8 points: the better f=4 run
    write_run(runs, "synthetic-noscope-night", 1, 0.95)
    write_run(runs, "synthetic-noscope-night", 2, 0.95)
    write_run(runs, "synthetic-noscope-night", 3, 0.949)
    write_run(runs, "synthetic-noscope-taipei", 2, 0.9)                      # no f=1 run
    csv_path = tmp_path / "r.csv"
    write_speeds(csv_path, {"noscope_coral": {1: 1000, 2: 1500, 3: 3000, 4: 2000},
                            "noscope_night": {1: 1000, 2: 2000, 3: 2000, 4: 2500},  # equal speeds at f=2, f=3
                            "noscope_taipei": {1: 100, 2: 150}})
    done = choose(runs, csv_path, "--out", tmp_path / "out" / "choice")
    assert done.returncode == 0, done.stderr
    table = {(r["task"], int(r["fold"])): r for r in rows_of(tmp_path / "out" / "choice.csv")}
    recommended = {task: fold for (task, fold), r in table.items() if r["recommended"] == "True"}
    # coral: f=3 is fastest but 2 points down; f=4 (distill, 0.8 points) beats f=2.
    # night: f=2 and f=3 run equally fast (f=4 has no trained run): the smaller, f=2.
    # taipei: no f=1 run, so no gap and no recommendation.
    assert recommended == {"noscope-coral": 4, "noscope-night": 2}
    assert table[("noscope-coral", 4)]["recipe"] == "distill"
    assert float(table[("noscope-coral", 4)]["gap_points"]) == pytest.approx(0.8)
    assert float(table[("noscope-coral", 4)]["speedup"]) == pytest.approx(2.0)
    assert table[("noscope-night", 4)]["note"] == "no trained run"
    assert table[("noscope-taipei", 2)]["note"] == "no f=1 run: gap unknown"
    assert "## noscope-taipei: no recommendation" in done.stdout
    assert "recommended for 2 of 3 task(s): noscope-coral f=4 (trained on synthetic-noscope-coral: generated " \
           "stand-in data)" in done.stderr
    assert "## noscope-coral: deploy f=4\n\nTrained on synthetic-noscope-coral. **Generated stand-in data**" in done.stdout
    assert table[("noscope-coral", 4)]["dataset"] == "synthetic-noscope-coral"
    assert (tmp_path / "out" / "choice.md").read_text() == done.stdout
    assert (tmp_path / "out" / "choice.png").read_bytes()[:4] == b"\x89PNG"
    strict = choose(runs, csv_path, "--max_drop", "0.5")
    assert "## noscope-coral: deploy f=2" in strict.stdout
    none_at_all = choose(runs, csv_path, "--max_drop", "0")
    assert "## noscope-coral: deploy f=1" in none_at_all.stdout and "## noscope-night: deploy f=2" in none_at_all.stdout


def test_the_chooser_reports_missing_throughput_and_bad_input(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.99)
    write_run(runs, "synthetic-noscope-coral", 2, 0.99)
    csv_path = tmp_path / "r.csv"
    write_speeds(csv_path, {"noscope_coral": {1: 1000}})
    done = choose(runs, csv_path)
    assert done.returncode == 0 and "no throughput" in done.stdout and "deploy f=1" in done.stdout
    two = tmp_path / "two.csv"
    write_speeds(two, {"noscope_coral": {1: 1000, 2: 900}})
    two.write_text(two.read_text() + "noscope_coral,0,1,1024,Original,10,1e9,eager,fp32,cpu,32,1,full,,,\n")
    mixed = choose(runs, two)
    assert mixed.returncode == 2 and "--backend eager" in mixed.stderr and "--backend onnxruntime" in mixed.stderr
    assert "deploy f=1" in choose(runs, two, "--backend", "onnxruntime").stdout
    assert choose(tmp_path / "nothing", csv_path).returncode == 2
    empty = choose(runs, tmp_path / "missing.csv")
    assert empty.returncode == 2 and "run ./run_inference.sh" in empty.stderr
    both = choose(runs, csv_path, "--measure")
    assert both.returncode == 2 and "one of them" in both.stderr


def test_the_chooser_keeps_aligned_runs_and_rows_apart(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.99)
    write_run(runs, "synthetic-noscope-coral", 2, 0.80)             # the paper's widths: 19 points down
    write_run(runs, "synthetic-noscope-coral", 2, 0.99, align=16)   # aligned: no loss
    paper, aligned = tmp_path / "paper.csv", tmp_path / "aligned.csv"
    write_speeds(paper, {"noscope_coral": {1: 1000, 2: 500}})
    write_speeds(aligned, {"noscope_coral": {1: 1000, 2: 1500}}, align=16)
    both = tmp_path / "both.csv"
    both.write_text(paper.read_text() + "".join(aligned.read_text().splitlines(True)[2:]))  # one f=1 row
    default = choose(runs, both, "--out", tmp_path / "paper")
    row = next(r for r in rows_of(tmp_path / "paper.csv") if r["fold"] == "2")
    assert (float(row["test_top1"]), float(row["images_per_sec"])) == (0.80, 500) and "deploy f=1" in default.stdout
    choose(runs, both, "--align", "16", "--out", tmp_path / "al")
    row = next(r for r in rows_of(tmp_path / "al.csv") if r["fold"] == "2")
    assert (float(row["test_top1"]), float(row["images_per_sec"]), row["recommended"]) == (0.99, 1500, "True")
    bad = choose(runs, both, "--max_drop", "nan")
    assert bad.returncode == 2 and "--max_drop" in bad.stderr


def test_the_chooser_measures_now(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.99)
    write_run(runs, "synthetic-noscope-coral", 2, 0.99)
    done = choose(runs, "--measure", "--device", "cpu", "--backend", "eager", "--batch_size", "8", "--trials", "1",
                  "--min_time", "0", "--warmup", "0")
    assert done.returncode == 0, done.stderr
    assert "(measured now)" in done.stdout and "measured noscope-coral: f=1" in done.stderr


def test_the_chooser_says_where_int8_is_slower_than_fp32(tmp_path):
    runs = tmp_path / "runs"
    for dataset in ("synthetic-noscope-coral", "synthetic-sot/timer3"):
        write_run(runs, dataset, 1, 0.99)
        write_run(runs, dataset, 4, 0.99)
    csv_path = tmp_path / "r.csv"
    write_speeds(csv_path, {"noscope_coral": {1: [1000, 1010, 990], 4: [900] * 3},
                            "sot/timer3": {1: [1000] * 3, 4: [1100] * 3}})
    write_speeds(csv_path, {"noscope_coral": {1: [800] * 3, 4: [950, 960, 940]},
                            "sot/timer3": {1: [1500] * 3, 4: [2800] * 3}}, precision="int8")
    mixed = choose(runs, csv_path)
    assert mixed.returncode == 2 and "--precision int8" in mixed.stderr and "--precision fp32" in mixed.stderr
    done = choose(runs, csv_path, "--precision", "int8")
    assert done.returncode == 0, done.stderr
    assert ("int8 against fp32 (the same CSV): int8 f=4 at 0.95x fp32 f=1 (range 0.95-0.95 over 3 trials, separate "
            "sweeps, trials paired by number) (950 vs 1,000 images/sec): int8 is slower than fp32 for this model here: "
            "deploy fp32") in done.stdout
    assert ("int8 f=4 at 2.55x fp32 f=4 (range 2.55-2.55 over 3 trials, separate sweeps, trials paired by number) "
            "(2,800 vs 1,100 images/sec) and 2.80x fp32 f=1 (range 2.80-2.80 over 3 trials, separate sweeps, trials paired "
            "by number): int8 is faster here") \
        in done.stdout
    alone = tmp_path / "int8.csv"
    write_speeds(alone, {"noscope_coral": {1: 800, 4: 950}}, precision="int8")
    assert "int8 against fp32" not in choose(runs, alone, "--precision", "int8").stdout


def test_overlapping_trials_are_a_tie_and_the_chooser_takes_the_smaller_fold(tmp_path):
    from util.measure.compare import choose as take, comparison, ratio
    overlapping = {1: [1000, 1100, 950], 4: [1060, 1000, 1010]}  # f=4/f=1 per trial: 1.06, 0.91, 1.063
    assert ratio(overlapping, 4, 1).verdict == "tie" and take(overlapping) == 1
    assert comparison(overlapping, 4, 1) == "f=4 and f=1 tie (ratio 0.91-1.06 over 3 trials)"
    apart = {1: [1000, 1100, 950], 4: [1500, 1600, 1400]}
    assert take(apart) == 4 and comparison(apart, 4, 1) == "f=4 at 1.47x f=1 (range 1.45-1.50 over 3 trials)"
    assert comparison({1: [1000], 4: [1500]}, 4, 1) == "f=4 at 1.50x f=1 (one trial: no spread)"

    runs = tmp_path / "runs"
    for fold in (1, 2, 4):
        write_run(runs, "synthetic-noscope-coral", fold, 0.99)
    tied = tmp_path / "tied.csv"
    write_speeds(tied, {"noscope_coral": {1: [1000, 1100, 950], 2: [900, 950, 920], 4: [1060, 1000, 1010]}})
    done = choose(runs, tied, "--out", tmp_path / "choice")
    assert done.returncode == 0, done.stderr
    assert "## noscope-coral: deploy f=1" in done.stdout  # f=4's median is highest, but within the spread of f=1's
    table = {int(r["fold"]): r for r in rows_of(tmp_path / "choice.csv")}
    assert table[4]["note"] == "f=4 and f=1 tie (ratio 0.91-1.06 over 3 trials): the smaller fold is recommended"
    assert (float(table[4]["speedup_low"]), float(table[4]["speedup_high"]), table[4]["trials"]) == (
        pytest.approx(1000 / 1100, rel=1e-5), pytest.approx(1010 / 950, rel=1e-5), "3")
    assert "| 1,010 | 1.01x (0.91-1.06) |" in done.stdout and "median of 3 trial(s)" in done.stdout
    faster = tmp_path / "faster.csv"
    write_speeds(faster, {"noscope_coral": {1: [1000, 1100, 950], 4: [1500, 1600, 1400]}})
    assert "## noscope-coral: deploy f=4" in choose(runs, faster).stdout


def test_a_quick_or_one_trial_csv_is_said_to_be_one(tmp_path):
    runs = tmp_path / "runs"
    for fold in (1, 4):
        write_run(runs, "synthetic-noscope-coral", fold, 0.99)
    quick = tmp_path / "quick.csv"
    write_speeds(quick, {"noscope_coral": {1: 1000, 4: 1230}}, timing="quick")
    done = choose(runs, quick)
    assert done.returncode == 0, done.stderr
    assert "**from a --quick smoke run (one short trial each: not a measurement to deploy by)**" in done.stdout
    single = tmp_path / "single.csv"
    write_speeds(single, {"noscope_coral": {1: 1000, 4: 1230}})
    assert "**one trial per configuration (no spread: speed-ups may be noise)**" in choose(runs, single).stdout
    write_speeds(quick, {"noscope_coral": {1: [1000, 1010, 990], 4: [900, 910, 905]}})  # a full sweep beside it
    both = choose(runs, quick)
    assert "deploy f=1" in both.stdout and "smoke run" not in both.stdout and "median of 3 trial(s)" in both.stdout


def test_the_demos_closing_lines_give_the_spread_and_say_a_tie(monkeypatch):
    import pandas as pd
    from util.train import sweep
    summary = pd.DataFrame({"dataset": ["synthetic-noscope-coral"] * 2 + ["synthetic-noscope-night"] * 2,
                            "fold": [1, 4, 1, 4], "test_top1": [0.95, 0.95, 0.90, 0.80]})
    speeds = {"noscope_coral": {"default f=1": [1000, 1100, 950], "default f=4": [1060, 1000, 1010]},
              "noscope_night": {"default f=1": [1000, 1000, 1000], "default f=4": [1500, 1600, 1400]}}
    monkeypatch.setattr(sweep, "compare_with_plain_eager",
                        lambda task, folds, *a, **k: (speeds[task.replace("-", "_")], "onnxruntime"))
    lines = sweep.folding_gains(summary, "cpu").splitlines()
    assert "3 interleaved trials" in lines[1]
    assert lines[2] == ("  synthetic-noscope-coral: f=4 top-1 0.950, f=1 0.950 (+0.0 points); images/sec: f=4 and f=1 "
                        "tie (ratio 0.91-1.06 over 3 trials) (onnxruntime)")
    assert lines[3].endswith("(-10.0 points); images/sec: f=4 at 1.50x f=1 (range 1.40-1.60 over 3 trials) (onnxruntime)")
    assert "on a CPU in fp32 folding often gains little" in lines[4]


def test_a_directory_given_for_the_results_csv_is_named_as_one(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synthetic-noscope-coral", 1, 0.99)
    folder = tmp_path / "sweep"
    folder.mkdir()
    fix = f"{folder} is a directory, not a results CSV: pass the CSV file that ./run_inference.sh wrote"
    chosen = choose(runs, folder)
    assert chosen.returncode == 2 and fix in chosen.stderr and "run ./run_inference.sh" not in chosen.stderr
    report = run_cli(sys.executable, "util/inference_report.py", folder)
    assert report.returncode == 2 and fix in report.stderr
    sweep = run_cli("./run_inference.sh", folder, "--quick", "--models", "noscope_coral", "--no_peak")
    assert sweep.returncode == 2 and f"{folder} is a directory: name the CSV to write" in sweep.stderr
    assert list(folder.iterdir()) == []


def test_several_batch_sizes_are_one_table_with_a_recommendation_each(tmp_path, capsys):
    from util import choose_fold
    runs = tmp_path / "runs"
    write_run(runs / "f1", "noscope-coral", 1, 0.95, val=0.95)
    write_run(runs / "f4", "noscope-coral", 4, 0.95, val=0.95)
    csv_path = tmp_path / "two.csv"
    lines = [HEADER]
    for batch, speeds in ((64, {1: [1000, 1010, 990], 4: [900, 905, 895]}), (1024, {1: [1000, 990, 1010],
                                                                                     4: [2000, 2020, 1980]})):
        for fold, trials in speeds.items():
            mode = "Original" if fold == 1 else "Folded"
            lines += [f"noscope_coral,{t},{fold},{batch},{mode},{ips},1e9,eager,fp32,cpu,32,1,full{NO_LATENCY}"
                      for t, ips in enumerate(trials)]
    csv_path.write_text("\n".join(lines) + "\n")
    choose_fold.main([str(runs), str(csv_path), "--out", str(tmp_path / "choice")])
    said = capsys.readouterr().out
    assert "## noscope-coral: deploy f=1 at batch 64, f=4 at batch 1024" in said
    assert "| batch | f | recipe |" in said and "| 1024 | **4** |" in said and "| 64 | **1** |" in said
    table = list(csv.DictReader((tmp_path / "choice.csv").open()))
    assert [(r["batch_size"], r["fold"], r["recommended"]) for r in table] == [
        ("64", "1", "True"), ("64", "4", "False"), ("1024", "1", "False"), ("1024", "4", "True")]
    choose_fold.main([str(runs), str(csv_path), "--batch_size", "64"])
    assert "## noscope-coral: deploy f=1\n" in capsys.readouterr().out
