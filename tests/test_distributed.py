"""DistributedDataParallel under torchrun (2 CPU processes, gloo) and --shard slices of the sweep."""
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from config.tasks import get_task, task_names
from datasets import load_splits
from datasets.loaders import collate
from helpers import run_cli, write_image_folder
from models import build_classifier
from util.train import sweep
from util.train.distributed import ShardSampler
from util.train.spec import build_spec
from util.train import loop, protocol

TASK, FOLD, EPOCHS = "noscope-coral", 2, 3
TRAIN_PER_CLASS = 24  # 48 training images: 24 per rank, batches of 4 per rank, multiples of f


def torchrun(*args):
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 args...` on the CPU."""
    return run_cli(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_shard_sampler_gives_every_item_once_per_epoch(n, world):
    data = list(range(n))
    orders = []
    for epoch in range(2):
        seen = []
        for rank in range(world):
            sampler = ShardSampler(data, rank, world, seed=5)
            sampler.set_epoch(epoch)
            seen += [i for batch in DataLoader(data, batch_size=2, sampler=sampler) for i in batch.tolist()]
            assert len(sampler) == len(list(sampler))
        assert sorted(seen) == data
        orders.append(seen)
    assert n < 3 or orders[0] != orders[1]  # a new order every epoch


@pytest.mark.slow
def test_torchrun_trains_with_ddp_and_rank_0_alone_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on a 2-core machine
    data = tmp_path / "data"
    write_image_folder(data / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(TRAIN_PER_CLASS, 10, 10))
    argv = ["train.py", tmp_path / "runs", "--datasets", TASK, "--folds", str(FOLD), "--epochs", str(EPOCHS),
            "--batch_size", "8", "--data_dir", data, "--device", "cpu", "--workers", "0", "--lr", "0.003"]
    done = torchrun(*argv)
    assert done.returncode == 0, done.stderr
    for epoch in range(1, EPOCHS + 1):  # printed by rank 0 only
        assert done.stdout.count(f"{TASK} fold {FOLD} epoch {epoch}/{EPOCHS}:") == 1, done.stdout
    assert done.stdout.count("training 3 epochs into") == 1 and done.stdout.count("written to") == 1

    run = sweep.run_dir(tmp_path / "runs", build_spec(TASK, FOLD))
    metrics = ["loss", "top1", "top2"]
    assert files_under(tmp_path / "runs") == sorted(
        [str(run.relative_to(tmp_path / "runs") / name) for name in ("best.pth", "current.pth", "result.json", "run.json")]
        + [str(run.relative_to(tmp_path / "runs") / "stats" / f"{s}_{m}.txt")
           for s in ("train", "val", "test") for m in metrics]
        + [str(run.relative_to(tmp_path / "runs") / "stats" / "train_seconds.txt"), "summary.csv"])
    for path in (run / "stats").iterdir():
        assert len(path.read_text().splitlines()) == EPOCHS

    current = torch.load(run / "current.pth", weights_only=True)
    assert current["train_images"] == EPOCHS * 2 * TRAIN_PER_CLASS  # each image once per epoch over both ranks

    best = torch.load(run / "best.pth", weights_only=True)
    model = build_classifier(TASK, FOLD)
    model.load_state_dict(best["model"])
    splits = load_splits(TASK, FOLD, data, None)  # the trainer's default seed: the same orders
    result = json.loads((run / "result.json").read_text())
    for split in ("val", "test"):  # what rank 0 reported = one process evaluating the saved weights
        loader = DataLoader(splits[split], batch_size=8, collate_fn=collate)
        sums = loop.evaluate(model, loader, FOLD, torch.device("cpu"), 2, split, protocol.paper_protocol(get_task(TASK), FOLD))
        alone = loop.averages(sums, FOLD, split)
        reported = {m: float((run / "stats" / f"{split}_{m}.txt").read_text().splitlines()[result["best_epoch"]])
                    for m in metrics}
        assert reported == pytest.approx({m: alone[m] for m in metrics}, abs=2e-6)
        assert result[f"{'best_val' if split == 'val' else 'test'}_top1"] == pytest.approx(alone["top1"], abs=1e-12)

    again = torchrun(*argv)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, skipping") == 1


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 60])
def test_shards_cover_the_sweep_exactly_once(count):
    folds = [1, 2, 3, 4]
    units = sweep.sweep_units(task_names(), folds)
    runs = [(d, f) for index in range(1, count + 1) for d, fs in sweep.shard(units, index, count) for f in fs]
    assert sorted(runs) == sorted((d, f) for d in task_names() for f in folds)
    assert len(runs) == len(set(runs))
    assert ("cifar10", folds) in units  # distilled folds need their fold-1 teacher: one job


def test_sharded_sweep_then_full_summary(tmp_path):
    data = tmp_path / "data"
    write_image_folder(data / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    argv = [sys.executable, "train.py", tmp_path / "runs", "--datasets", TASK, "--folds", "1", "2", "--epochs", "1",
            "--data_dir", data, "--device", "cpu", "--workers", "0"]
    for index, fold in ((1, 1), (2, 2)):
        done = run_cli(*argv, "--shard", f"{index}/2")
        assert done.returncode == 0, done.stderr
        assert f"shard {index}/2: {TASK} fold {fold}\n" in done.stdout
        rows = (tmp_path / "runs" / f"summary_shard{index}of2.csv").read_text().splitlines()
        assert [row.split(",")[:2] for row in rows[1:]] == [[TASK, str(fold)]]
    full = run_cli(*argv)
    assert full.returncode == 0 and full.stdout.count("finished earlier, skipping") == 2
    rows = (tmp_path / "runs" / "summary.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [[TASK, "1"], [TASK, "2"]]


@pytest.mark.parametrize("spec, message", [("3/2", "'3/2': I must be between 1 and N"),
                                           ("1-2", "'1-2' is not I/N"), ("0/4", "'0/4': I must be between 1 and N")])
def test_bad_shard_is_a_usage_error(tmp_path, spec, message):
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--shard", spec)
    assert done.returncode == 2 and f"error: argument --shard: {message}" in done.stderr
    assert not (tmp_path / "runs").exists()
