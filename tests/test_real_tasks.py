"""The real-image benchmark (datasets/real.py, util/make_real_tasks.py) and task folders from $FOLDEDCNNS_TASKS."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from config import tasks
from datasets import load_splits
from helpers import run_cli
from datasets.real import TASKS, RealTask, bands, crops


def test_every_crop_lies_inside_its_splits_band():
    task = RealTask("bands", "", (3, 8, 8), epochs=1, crop_sizes=(8, 20), band_axis=1, per_class=(30, 10, 10))
    columns = np.tile(np.arange(200, dtype=np.uint8), (60, 1))  # each pixel's value: its column
    image = Image.fromarray(np.stack([columns] * 3, axis=2))
    made = crops(image, task, np.random.default_rng(0))
    for (start, stop), split in zip(bands(200), ("train", "val", "test")):
        values = np.concatenate([np.asarray(c)[:, :, 0].ravel() for c in made[split]])
        assert len(made[split]) == dict(train=30, val=10, test=10)[split]
        assert start <= values.min() and values.max() < stop  # no pixel of another split's band
    assert bands(200) == [(0, 140), (140, 170), (170, 200)]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    out = tmp_path_factory.mktemp("bench") / "real"
    done = run_cli(sys.executable, "util/make_real_tasks.py", out, "--tasks", "digits", "textures")
    assert done.returncode == 0, done.stderr
    return out, done


def test_the_benchmark_is_written_with_its_task_folders(benchmark, monkeypatch):
    out, done = benchmark
    assert "real/digits: 1078 train, 359 val, 360 test images of 10 classes" in done.stdout
    assert "real/textures: 1200 train, 300 val, 300 test images of 4 classes" in done.stdout
    description = json.loads((out / "tasks" / "real" / "textures" / "model_description.json").read_text())
    assert description["family"] == "game" and description["input"] == [3, 24, 24]
    assert description["class_names"] == ["brick", "grass", "gravel", "moon"]
    readme = (out / "README.md").read_text()
    assert "## real/textures" in readme and "CC0 (cc0textures.com, Bricks25)" in readme and "trains 40 epochs" in readme

    monkeypatch.setenv(tasks.TASKS_ENV, str(out / "tasks"))
    tasks.all_tasks.cache_clear()
    try:
        assert tasks.get_task("real/textures").num_classes == 4 and "lol/goldnumber-fraction" in tasks.task_names()
        splits = load_splits("real/textures", data_root=out / "data", cache=False)
        assert [len(splits[s]) for s in ("train", "val", "test")] == [1200, 300, 300]
        assert splits["test"][0][0].shape == (3, 24, 24)
    finally:
        tasks.all_tasks.cache_clear()


def test_the_same_seed_writes_the_same_images(benchmark, tmp_path):
    out, _ = benchmark
    again = run_cli(sys.executable, "util/make_real_tasks.py", tmp_path / "again", "--tasks", "textures")
    assert again.returncode == 0, again.stderr
    for split in ("train", "test"):
        first = sorted((out / "data" / "real" / "textures" / split / "moon").iterdir())[:5]
        second = sorted((tmp_path / "again" / "data" / "real" / "textures" / split / "moon").iterdir())[:5]
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    refused = run_cli(sys.executable, "util/make_real_tasks.py", out)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "error:" in refused.stderr


def test_a_task_folder_from_the_environment_that_is_not_a_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(tasks.TASKS_ENV, str(tmp_path / "nowhere"))
    tasks.all_tasks.cache_clear()
    try:
        with pytest.raises(ValueError, match="FOLDEDCNNS_TASKS names .*nowhere, which is not a folder"):
            tasks.all_tasks()
    finally:
        tasks.all_tasks.cache_clear()
    duplicate = tmp_path / "more" / "noscope-coral"
    duplicate.mkdir(parents=True)
    (duplicate / "model_description.json").write_text(
        (tasks.CONFIG_DIR / "noscope-coral" / "model_description.json").read_text())
    monkeypatch.setenv(tasks.TASKS_ENV, str(tmp_path / "more"))
    try:
        with pytest.raises(ValueError, match="task noscope-coral is defined twice"):
            tasks.all_tasks()
    finally:
        tasks.all_tasks.cache_clear()


def test_the_benchmark_names_a_holdout_and_each_tasks_epochs():
    assert [t.name for t in TASKS.values() if t.holdout] == ["holdout"]
    assert all(t.epochs > 0 and len(t.class_names) >= 2 for t in TASKS.values())


@pytest.mark.slow
def test_the_real_table_trains_both_paths_and_writes_the_gaps(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    bench = tmp_path / "bench"
    assert run_cli(sys.executable, "util/make_real_tasks.py", bench, "--tasks", "textures").returncode == 0
    done = run_cli(sys.executable, "util/real_table.py", tmp_path / "runs", "--benchmark", bench, "--out",
                   tmp_path / "real", "--tasks", "textures", "--folds", "2", "--model_file",
                   "docs/examples/real_models.py", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in (tmp_path / "real.csv").read_text().splitlines()]
    assert rows[0][:4] == ["task", "path", "fold", "seed"] and [r[:4] for r in rows[1:]] == [
        ["textures", "config", "2", "19"], ["textures", "own", "2", "19"]]
    for r in rows[1:]:  # the gap is f=1's test top-1 minus the student's, in points
        assert float(r[7]) == pytest.approx(100 * (float(r[5]) - float(r[6])), abs=0.01)
        assert 1 <= int(r[4]) <= 3  # the recipe's 3x, or the epochs that fit in 1.8x the original's seconds here
    text = (tmp_path / "real.md").read_text()
    assert "| textures | --model_file | 2 | 1 |" in text and "with `--epochs 1`" in text
    assert (tmp_path / "runs" / "seed19" / "own" / "textures-own" / "fold2").is_dir()
