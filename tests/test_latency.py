"""Latency: percentiles by nearest rank, per-batch timing, the curve's batch sizes, saturation, the chooser within a
bound, and the CSV's latency columns from a small real run."""
import csv
import itertools

import pytest

from helpers import run_cli
from util.measure import latency
from util.measure.compare import choose, choose_within
from util.measure.results_csv import HEADER, load


def test_nearest_rank_percentiles():
    values = list(range(1, 101))  # 1..100
    assert latency.nearest_rank(values, 50) == 50 and latency.nearest_rank(values, 99) == 99
    assert latency.nearest_rank([5.0], 99) == 5.0
    assert latency.nearest_rank([3, 1, 2], 50) == 2 and latency.nearest_rank([3, 1, 2], 99) == 3
    with pytest.raises(ValueError):
        latency.nearest_rank([], 50)


def test_latency_of_known_batches():
    seconds = [0.010] * 98 + [0.020, 0.100]  # 100 batches of 64 images
    got = latency.latency_of(seconds, 64)
    assert got.p50_ms == pytest.approx(10) and got.p99_ms == pytest.approx(20) and got.batches == 100
    assert got.images_per_sec == pytest.approx(64 * 100 / sum(seconds))


def test_each_batch_is_timed_on_its_own_until_enough_batches_or_seconds():
    ticks = itertools.count()
    clock = lambda: next(ticks) * 0.5  # every clock reading half a second later  # noqa: E731
    synced = []
    seconds = latency.time_each_batch(lambda: None, lambda: synced.append(1), min_batches=200, max_seconds=10,
                                      floor=20, clock=clock)
    assert len(seconds) == 20 and all(s == 0.5 for s in seconds)  # 10 s passed long before: the floor of 20
    assert len(synced) == 21  # once before, then after every batch
    fast = latency.time_each_batch(lambda: None, lambda: None, min_batches=30, max_seconds=1e9, floor=20)
    assert len(fast) == 30


def test_the_curves_batch_sizes_and_its_saturation():
    assert latency.curve_batch_sizes(1) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert latency.curve_batch_sizes(3) == [3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072]
    assert all(b % 3 == 0 for b in latency.curve_batch_sizes(3))
    assert latency.saturation_batch({1: 100, 8: 700, 64: 950, 512: 1000, 4096: 990}) == 64


def test_the_chooser_takes_the_fastest_point_within_the_bound_and_the_smaller_on_a_tie():
    trials = {(1, 64): [1000, 1010, 990], (1, 256): [1500, 1490, 1510], (4, 64): [1800, 1790, 1810],
              (4, 256): [2600, 2610, 2590]}
    p99 = {(1, 64): 2.0, (1, 256): 8.0, (4, 64): 3.0, (4, 256): 12.0}
    got = choose_within(trials, p99, 10)
    assert got.pick == (4, 64) and got.original == (1, 256)
    assert got.gain.median == pytest.approx(1800 / 1500, rel=0.01) and got.gain.verdict == "faster"
    assert choose_within(trials, p99, 100).pick == (4, 256)
    assert choose_within(trials, p99, 1) is None  # nothing fits
    tied = {(2, 64): [1000, 1100, 950], (4, 64): [1050, 1000, 1000], (4, 32): [1040, 990, 1020]}
    assert choose_within(tied, {k: 1.0 for k in tied}, 5).pick == (2, 64)  # ties: the smaller fold first
    same_fold = {(4, 32): [1000, 1050, 990], (4, 64): [1040, 1000, 1000]}
    assert choose_within(same_fold, {k: 1.0 for k in same_fold}, 5).pick == (4, 32)  # then the smaller batch
    assert choose_within({(4, 64): [1800]}, {(4, 64): 3.0}, 10).original is None
    # (4, 64) ties with the fastest, (4, 128), and with f=1's point, which is slower than (4, 128): f=1 is taken
    chain = {(1, 64): [25412, 19902, 19603], (1, 128): [25197, 21126, 21070], (4, 64): [20288, 22273, 21052],
             (4, 128): [26016, 22090, 22571]}
    taken = choose_within(chain, {k: 1.0 for k in chain}, 5)
    assert choose(chain) == (4, 64) and taken.pick == taken.original == (1, 64) and taken.gain.median == 1.0


@pytest.mark.slow
def test_a_small_curve_on_the_cpu_fills_the_latency_columns(tmp_path):
    out = tmp_path / "curve.csv"
    done = run_cli("./run_inference.sh", out, "--models", "noscope_coral", "--folds", "1", "2", "--curve", "--curve_max", "16",
                   "--trials", "2", "--latency_batches", "3", "--latency_seconds", "0.01", "--no_peak",
                   "--backend", "eager", "--chunk", "full", "--warmup", "0")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == HEADER and {r["Timing"] for r in rows} == {"latency"}
    points = sorted({(int(r["Fold"]), int(r["Batch Size"])) for r in rows})
    assert points == [(1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (2, 2), (2, 4), (2, 8), (2, 16)]
    assert len(rows) == 2 * len(points)
    assert all(int(r["Timed Batches"]) >= 3 and 0 < float(r["Latency p50 (ms)"]) <= float(r["Latency p99 (ms)"])
               for r in rows)
    assert sorted({int(r["Trial"]) for r in rows}) == [0, 1]
    said = done.stderr.splitlines()
    at = said.index("fold to take (eager, fp32, cpu; the fastest, or the smaller where two tie within the trials' "
                    "spread), per model and batch:")
    assert [line.split(" at batch ")[1] for line in said[at + 1:at + 5]] == ["2", "4", "8", "16"]  # one line each
    assert f"within a p99 bound (1, 5, 20, 100 ms): python3 util/inference_report.py {out}" in said
    frame = load(out)
    assert frame["Latency p99 (ms)"].notna().all()
    refused = run_cli("./run_inference.sh", tmp_path / "q.csv", "--quick", "--latency")
    assert refused.returncode == 2 and "--quick and --latency" in refused.stderr


def write_curve(path, points, models=("noscope_coral",)):
    """A latency CSV: {(fold, batch): (images/sec per trial, p50 ms, p99 ms)}, the same curve for each of `models`."""
    lines = [",".join(HEADER)]
    for model, ((fold, batch), (speeds, p50, p99)) in itertools.product(models, points.items()):
        for trial, ips in enumerate(speeds):
            mode = "Original" if fold == 1 else "Folded"
            lines.append(f"{model},{trial},{fold},{batch},{mode},{ips},1e9,eager,fp32,cpu,{batch // fold},1,"
                         f"latency,{p50},{p99},200")
    path.write_text("\n".join(lines) + "\n")


def test_the_report_gives_each_bound_its_pick_and_each_fold_its_saturation(tmp_path):
    from util import inference_report
    csv_path = tmp_path / "curve.csv"
    write_curve(csv_path, {(1, 1): ([100, 101, 99], 0.5, 0.9), (1, 64): ([900, 910, 890], 3, 4),
                           (1, 1024): ([1000, 1010, 990], 40, 60), (4, 4): ([300, 310, 290], 2, 3),
                           (4, 64): ([1500, 1490, 1510], 4, 4.5), (4, 1024): ([2000, 2020, 1980], 30, 45)})
    inference_report.main([str(csv_path)])
    report = (tmp_path / "curve-report" / "report.md").read_text()
    assert (tmp_path / "curve-report" / "latency.png").stat().st_size > 0
    assert "f=1 64 (900 images/sec)" in report and "f=4 1024 (2,000 images/sec)" in report  # saturation
    assert "| 1 | f=1 | 1 | 100 | 0.9 | f=1 is the pick |" in report
    assert "| 5 | f=4 | 64 | 1,500 | 4.5 | 1.67x (range 1.64-1.70 over 3 trials) |" in report
    assert "| 100 | f=4 | 1024 | 2,000 | 45 | 2.00x (range 2.00-2.00 over 3 trials) |" in report
    assert "## Every model within" not in report  # one curve: its own section says it all
    write_curve(csv_path, {(1, 64): ([900], 3, 4)})
    inference_report.main([str(csv_path)])
    assert "| 1 | nothing fits |  |  | smallest p99 measured 4 ms |  |" in (tmp_path / "curve-report" /
                                                                            "report.md").read_text()


def test_the_report_sets_every_models_pick_side_by_side_per_bound(tmp_path):
    from util import inference_report
    csv_path = tmp_path / "curve.csv"
    write_curve(csv_path, {(1, 1): ([100, 101, 99], 0.5, 0.9), (4, 64): ([1500, 1490, 1510], 4, 4.5)},
                models=("noscope_coral", "sot/timer3"))
    inference_report.main([str(csv_path)])
    report = (tmp_path / "curve-report" / "report.md").read_text()
    within_5 = report.split("## Every model within p99 5 ms")[1].split("## ")[0]
    for model in ("noscope_coral", "sot/timer3"):
        row = f"| {model} | eager, fp32 | f=4 | 64 | 1,500 | 4.5 | 15.00x (range 14.75-15.25 over 3 trials) |"
        assert row in within_5
    assert report.index("## Every model within p99 100 ms") < report.index("## noscope_coral: eager, fp32, cpu")


def test_choose_fold_takes_the_fastest_accurate_point_within_the_bound_or_exits_3(tmp_path, capsys):
    from test_choose_fold import write_run
    from util import choose_fold
    runs = tmp_path / "runs"
    write_run(runs / "f1", "noscope-coral", 1, 0.95, val=0.95)
    write_run(runs / "f2", "noscope-coral", 2, 0.948, val=0.95)
    write_run(runs / "f4", "noscope-coral", 4, 0.90, val=0.95)  # 5 points behind: never taken
    csv_path = tmp_path / "curve.csv"
    write_curve(csv_path, {(1, 64): ([900, 910, 890], 3, 4), (2, 64): ([1300, 1310, 1290], 3, 4.5),
                           (4, 64): ([2000, 2010, 1990], 3, 4.2), (2, 1024): ([1900, 1900, 1900], 40, 50)})
    choose_fold.main([str(runs), str(csv_path), "--latency_ms", "5", "--out", str(tmp_path / "pick")])
    said = capsys.readouterr().out
    assert "| noscope-coral | f=2 | 64 | 1,300 | 4.5 | 1.44x f=1 at batch 64 (range 1.44-1.45 over 3 trials) |" in said
    assert (tmp_path / "pick.md").read_text() == said
    with pytest.raises(SystemExit) as nothing:
        choose_fold.main([str(runs), str(csv_path), "--latency_ms", "2"])
    assert nothing.value.code == 3 and "smallest p99 measured is 4 ms" in capsys.readouterr().err
    with pytest.raises(SystemExit) as misuse:
        choose_fold.main([str(runs), "--measure", "--latency_ms", "5"])
    assert misuse.value.code == 2 and "./run_inference.sh CSV --curve" in capsys.readouterr().err


class FakeBench:
    """A benchmark whose batches take `ms` milliseconds each (p50 = p99 = ms)."""

    def __init__(self, point, ms):
        self.point, self.ms = point, ms

    def measure(self, trial):
        seconds = [self.ms / 1000] * 20
        return type("M", (), {"latency": latency.latency_of(seconds, self.point[1]),
                              "images_per_sec": latency.latency_of(seconds, self.point[1]).images_per_sec})()


def test_points_are_interleaved_trial_by_trial_small_batches_first_and_cut_past_the_stop():
    from util.measure.benchmark import interleaved_points
    ms = {(1, 1): 1, (1, 2): 2, (1, 4): 50, (1, 8): 90, (2, 2): 1, (2, 4): 3, (2, 8): 5}
    set_up = []

    def setup(point):
        set_up.append(point)
        return FakeBench(point, ms[point])

    seen = [(point, trial) for point, trial, _ in
            interleaved_points(ms, 2, setup, lambda bench, trial: bench.measure(trial), stop_ms=10)]
    assert seen[:6] == [((1, 1), 0), ((1, 2), 0), ((2, 2), 0), ((1, 4), 0), ((2, 4), 0), ((2, 8), 0)]
    assert (1, 8) not in set_up  # f=1's median passed 10 ms at batch 4: its larger batches are left out
    assert seen[6:] == [((1, 1), 1), ((1, 2), 1), ((2, 2), 1), ((1, 4), 1), ((2, 4), 1), ((2, 8), 1)]
    skipped = list(interleaved_points(ms, 1, setup, lambda bench, trial: bench.measure(trial),
                                      skip=lambda point, trial: point[0] == 2, stopped={1: 2}))
    assert [point for point, _, _ in skipped] == [(1, 1), (1, 2)]


@pytest.mark.slow
def test_infer_names_the_fold_and_batch_within_the_bound_or_exits_3():
    common = ["python3", "infer.py", "noscope-coral", "--fold", "auto", "--folds", "1", "2", "--trials", "1",
              "--latency_batches", "3", "--backend", "eager", "--device", "cpu", "--warmup", "0", "--chunk", "full",
              "--curve_max", "8"]
    done = run_cli(*common, "--latency_ms", "100000")
    assert done.returncode == 0, done.stderr
    assert "within 100000 ms: f=" in done.stdout and "compute latency only" in done.stdout
    assert "latency_p99_ms=" in done.stdout
    nothing = run_cli(*common, "--latency_ms", "0.001")
    assert nothing.returncode == 3 and "nothing fits within 0.001 ms: the smallest p99 measured is" in nothing.stderr
    misuse = run_cli("python3", "infer.py", "noscope-coral", "--fold", "2", "--latency_ms", "5")
    assert misuse.returncode == 2 and "add --fold auto" in misuse.stderr
