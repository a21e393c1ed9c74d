"""Training end to end on tiny data: every family, curriculum, distillation, resume, missing data."""
import json
import random
import sys

import pytest
import torch
from PIL import Image

from config.tasks import get_task
from models import build_classifier, build_model
from util.deploy import onnx as onnx_export
from util.train.checkpoint import load_classifier
from datasets import CurriculumDataset, DataMissing, DistillationDataset, curriculum_schedule, load_splits
from datasets.loaders import Batch, cifar_split_indices, collate
from util.core.device import cpu_bf16_problem
from torch.utils.data import DataLoader, default_collate
from torchvision.datasets import ImageFolder
from helpers import (assert_same_stats, run_cli, train_args, train_until_first_checkpoint, trainer_args,
                     write_image_folder)
from util.train import loop, protocol as protocols, trainer
from util.train.spec import build_spec

GAME = "sot/coin_count-digits_3_4-v2"  # 15 classes, 17 x 40


def lines(path):
    return path.read_text().splitlines()


def authors_shuffle(items, seed=19):
    """What the authors' code does: random.seed(19); random.shuffle(items) (on a copy)."""
    items = list(items)
    state = random.getstate()
    random.seed(seed)
    random.shuffle(items)
    random.setstate(state)
    return items


@pytest.mark.parametrize("fold, size", [(1, 5001), (2, 5002), (3, 5001), (4, 5004)])
def test_cifar_validation_is_the_authors_split(fold, size):
    order = authors_shuffle(range(50000))
    train, val = cifar_split_indices(50000, fold)
    assert val == order[-size:] and train == order[:-size]


def test_the_learning_rate_schedule_is_the_authors():
    """StepLR(200, 0.5) for runs trained on CIFAR itself; folded CIFAR-10 (distilled) keeps 1e-4 throughout."""
    cifar10, cifar100 = get_task("cifar10"), get_task("cifar100")
    assert protocols.paper_protocol(cifar10, 1).lr_step == 200
    for fold in (2, 3, 4):
        protocol = protocols.paper_protocol(cifar10, fold)
        assert protocol.distill and protocol.lr_step == 0 and protocol.lr == 1e-4
    assert all(protocols.paper_protocol(cifar100, fold).lr_step == 200 for fold in (1, 2, 3, 4))


@pytest.mark.parametrize("task, fold", [("noscope-coral", 1), ("noscope-coral", 3), (GAME, 1), (GAME, 2)])
def test_image_folder_orders_are_the_authors(tmp_path, task, fold):
    """Folded runs: each split's ImageFolder list shuffled by random.seed(19); NoScope val/test (every fold)
    then read through a second random.seed(19) permutation of their indices."""
    t = get_task(task)
    root = tmp_path / ("noscope-coral-subset" if t.family == "noscope" else task)
    write_image_folder(root, t.class_names or ["0", "1"], t.input_shape[1:], per_split=(5, 4, 3))
    splits = load_splits(task, fold, data_dir=tmp_path, data_root=tmp_path, cache=False)
    for split in ("train", "val", "test"):
        expected = ImageFolder(root / split).samples  # torchvision's order: classes sorted, files sorted
        if fold > 1:
            expected = authors_shuffle(expected)
        if t.family == "noscope" and split != "train":
            expected = [expected[i] for i in authors_shuffle(range(len(expected)))]
        assert splits[split].samples == expected, split
        assert splits[split].targets == [label for _, label in expected]


def test_batched_reads_give_the_per_image_batches(tmp_path):
    """Images held in memory are read a mini-batch at a time (one indexing, no per-image collation); the trainer's
    loaders must still see exactly the batches per-image reads give, with teacher logits and a curriculum."""
    t = get_task(GAME)
    write_image_folder(tmp_path / GAME, t.class_names, t.input_shape[1:], per_split=(3, 1, 1))
    train = load_splits(GAME, 2, data_dir=tmp_path, data_root=tmp_path)["train"]
    logits = torch.randn(len(train), t.num_classes)
    distilled = DistillationDataset(train, logits)
    for data in (train, distilled, CurriculumDataset(distilled, t.num_classes, 4, 4, 1)):
        batched = list(DataLoader(data, batch_size=8, collate_fn=collate))
        assert all(isinstance(b, Batch) for b in batched)
        one_by_one = [default_collate([data[i] for i in range(s, min(s + 8, len(data)))])
                      for s in range(0, len(data), 8)]
        assert len(batched) == len(one_by_one) == -(-len(data) // 8)
        for b, o in zip(batched, one_by_one):
            assert len(b) == len(o) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(b, o))


def test_cifar_splits_from_torchvision_format(tiny_cifar10):
    splits = load_splits("cifar10", fold=3, data_dir=tiny_cifar10, val_size=10)
    assert len(splits["val"]) == 12  # 10 + (3 - 10 % 3), as the authors count
    assert splits["val"].indices == authors_shuffle(range(80))[-12:]
    assert len(splits["train"]) == 80 - 12 and len(splits["test"]) == 40
    image, label = splits["val"][0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    assert abs(image.mean().item()) < 3  # normalised
    again = load_splits("cifar10", fold=3, data_dir=tiny_cifar10, val_size=10)
    assert again["val"].indices == splits["val"].indices  # the seeded shuffle is reproducible
    assert set(splits["val"].indices).isdisjoint(splits["train"].indices)


@pytest.mark.slow
def test_cifar_distillation_end_to_end(tiny_cifar10, tmp_path, capsys):
    teacher = train_args(trainer_args(tmp_path / "f1", "cifar10", 1, 2, data_dir=tiny_cifar10, val_size=16))
    assert teacher["epochs"] == 2 and (tmp_path / "f1" / "best.pth").exists()
    student_dir = tmp_path / "f2"
    result = train_args(trainer_args(student_dir, "cifar10", 2, 2, data_dir=tiny_cifar10, val_size=16,
                                           teacher=tmp_path / "f1" / "best.pth"))
    teacher_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("teacher "))
    assert teacher_line.startswith(f"teacher {tmp_path / 'f1' / 'best.pth'}: top-1 train 0.") and " test " in teacher_line
    logits = torch.load(student_dir / "teacher_logits_train.pt", weights_only=True)["logits"]
    assert logits.shape == (80 - 18, 10)  # validation: 16 + (2 - 16 % 2) images
    assert torch.load(student_dir / "teacher_logits_test.pt", weights_only=True)["logits"].shape == (40, 10)
    train_loss = [float(v) for v in lines(student_dir / "stats" / "train_loss.txt")]
    assert len(train_loss) == 2 and train_loss[1] < train_loss[0]
    test_top1 = lines(student_dir / "stats" / "test_top1.txt")  # result.json's top-1 is the best epoch's
    assert result["test_top1"] == pytest.approx(float(test_top1[result["best_epoch"]]), abs=1e-6)


def test_distillation_needs_a_teacher(tiny_cifar10, tmp_path):
    with pytest.raises(ValueError, match="trained by distillation: pass --teacher"):
        train_args(trainer_args(tmp_path / "f2", "cifar10", 2, 1, data_dir=tiny_cifar10, val_size=16))


def test_game_curriculum_end_to_end(tmp_path):
    task = get_task(GAME)
    write_image_folder(tmp_path / "games" / GAME, task.class_names, task.input_shape[1:])
    savedir = tmp_path / "run"
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", GAME, "--fold", "4", "--epochs", "3",
                   "--savedir", savedir, "--data_root", tmp_path / "games", "--workers", "0", "--lr", "0.003")
    assert done.returncode == 0, done.stderr
    assert "4/15 classes" in done.stdout and "6/15 classes" in done.stdout  # one class more every epoch
    assert {p.name for p in savedir.iterdir()} >= {"best.pth", "current.pth", "result.json", "stats"}
    assert {p.name for p in (savedir / "stats").iterdir()} == {
        f"{s}_{m}.txt" for s in ("train", "val", "test") for m in ("loss", "top1", "top2", "top5", "top10")} | {
        "train_seconds.txt"}
    losses = [float(v) for v in lines(savedir / "stats" / "train_loss.txt")]
    assert len(losses) == 3
    seconds = [float(v) for v in lines(savedir / "stats" / "train_seconds.txt")]  # so far, one line per epoch
    assert len(seconds) == 3 and 0 < seconds[0] < seconds[1] < seconds[2]
    assert seconds[-1] == pytest.approx(json.loads((savedir / "result.json").read_text())["train_seconds"], abs=1e-5)
    state = torch.load(savedir / "current.pth", weights_only=True)
    assert state["epoch"] == 3 and state["curriculum"]["active"] == 6
    # Beside this project's best (among epochs with the most classes), the authors' pick: the first epoch with
    # the highest validation top-1 of all, whatever its classes.
    result = json.loads((savedir / "result.json").read_text())
    val, test = ([float(v) for v in lines(savedir / "stats" / f"{s}_top1.txt")] for s in ("val", "test"))
    assert result["authors_best_epoch"] == val.index(max(val)) and result["best_epoch"] == 2  # 6 classes: epoch 2 only
    assert result["authors_best_val_top1"] == pytest.approx(max(val), abs=1e-6)
    assert result["authors_test_top1"] == pytest.approx(test[val.index(max(val))], abs=1e-6)
    slots = result["test_slot_top1"]  # top-1 by position in the folded group, at the best epoch
    assert len(slots) == 4 and len(result["val_slot_top1"]) == 4 and result["worst_slot_test_top1"] == min(slots)
    assert sum(slots) / 4 == pytest.approx(result["test_top1"])  # every slot holds a quarter of the images


def test_game_original_end_to_end_learns(tmp_path):
    task = get_task(GAME)
    write_image_folder(tmp_path / "games" / GAME, task.class_names, task.input_shape[1:])
    result = train_args(trainer_args(tmp_path / "run", GAME, 1, 3, data_root=tmp_path / "games", lr=0.003))
    losses = [float(v) for v in lines(tmp_path / "run" / "stats" / "train_loss.txt")]
    assert losses[0] > losses[1] > losses[2]
    assert result["test_top1"] > 3 / 15  # well above chance after three epochs


def test_channels_last_training_is_the_same_math(tmp_path):
    task = get_task(GAME)
    write_image_folder(tmp_path / "games" / GAME, task.class_names, task.input_shape[1:])
    losses = {}
    for layout in ("channels_last", "nchw"):
        args = trainer_args(tmp_path / layout, GAME, 2, 2, data_root=tmp_path / "games", lr=0.003)
        args.nchw = layout == "nchw"
        train_args(args)
        losses[layout] = [float(v) for v in lines(tmp_path / layout / "stats" / "train_loss.txt")]
        weights = torch.load(tmp_path / layout / "best.pth", weights_only=True)["model"]
        conv = next(w for w in weights.values() if w.dim() == 4)  # the first convolution's, saved as trained
        assert conv.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert losses["channels_last"] == pytest.approx(losses["nchw"], rel=1e-4)


def test_noscope_end_to_end_learns(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(48, 16, 16))
    result = train_args(trainer_args(tmp_path / "run", "noscope-coral", 2, 3, data_dir=tmp_path / "data"))
    losses = [float(v) for v in lines(tmp_path / "run" / "stats" / "train_loss.txt")]
    assert losses[-1] < losses[0]
    assert result["test_top1"] > 0.8  # two classes, clearly separable


def test_a_run_writes_its_spec_as_the_dry_run_prints_it_and_a_resume_checks_it(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    argv = ["fold_trainer.py", "--dataset", "noscope-coral", "--fold", "2", "--savedir", tmp_path / "run", "--epochs",
            "1", "--batch_size", "8", "--data_dir", tmp_path / "data", "--lr", "0.002", "--device", "cpu"]
    dry = run_cli(sys.executable, *argv, "--dry_run")
    assert dry.returncode == 0 and not (tmp_path / "run").exists()
    spec = json.loads(dry.stdout)
    assert (spec["images_per_input"], spec["multiplier"], spec["lr"], spec["overrides"]) == (2, 1.414214, 0.002,
                                                                                            {"lr": 0.002})
    assert run_cli(sys.executable, *argv).returncode == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == spec
    assert torch.load(tmp_path / "run" / "best.pth", weights_only=True)["run"] == spec
    other = run_cli(sys.executable, *argv[:4], "3", *argv[5:], "--continue_from_file", tmp_path / "run" / "current.pth")
    assert other.returncode == 2 and "is for dataset noscope-coral, fold 2" in other.stderr
    resume = [*argv, "--continue_from_file", tmp_path / "run" / "current.pth"]
    batch = run_cli(sys.executable, *resume[:10], "4", *resume[11:])
    assert batch.returncode == 2 and "trained with batch_size 8, and this command trains with 4" in batch.stderr
    assert "pass --batch_size 8" in batch.stderr
    shifted = run_cli(sys.executable, *resume, "--shift", "2")
    assert shifted.returncode == 2 and "pass --shift 0 to continue it" in shifted.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == spec  # a refused resume changes nothing


class Labelled(list):
    """(sample, label) pairs with the `targets` list a dataset of images has."""

    @property
    def targets(self):
        return [label for _, label in self]


def test_curriculum_schedule_follows_the_paper():
    assert curriculum_schedule(111, 4, 1500, 1500) == (11, 11, 60)
    assert curriculum_schedule(15, 4, 1500, 1500) == (4, 1, 60)
    assert curriculum_schedule(62, 4, 3000, 3000, slow=True) == (4, 3, 120)
    assert curriculum_schedule(111, 2, 150, 1500) == (11, 11, 6)  # a 10x shorter run: gaps shrink 10x
    data = CurriculumDataset(Labelled(zip(range(30), [i % 15 for i in range(30)])), 15, 4, 1, 6)
    assert data.set_epoch(0) == 4 and len(data) == 8
    assert data.set_epoch(13) == 6 and all(label < 6 for _, label in data)
    assert data.set_epoch(10_000) == 15 and len(data) == 30


def test_resume_gives_the_same_run(tmp_path, monkeypatch):
    task = get_task(GAME)
    write_image_folder(tmp_path / "games" / GAME, task.class_names, task.input_shape[1:])
    common = dict(data_root=tmp_path / "games", lr=0.003)
    train_args(trainer_args(tmp_path / "whole", GAME, 4, 3, **common))

    train_until_first_checkpoint(trainer_args(tmp_path / "parts", GAME, 4, 3, **common), monkeypatch)
    assert len(lines(tmp_path / "parts" / "stats" / "train_loss.txt")) == 1
    train_args(trainer_args(tmp_path / "parts", GAME, 4, 3, continue_from_file=tmp_path / "parts" / "current.pth",
                                  **common))

    assert_same_stats(tmp_path / "whole", tmp_path / "parts")
    whole = torch.load(tmp_path / "whole" / "current.pth", weights_only=True)
    parts = torch.load(tmp_path / "parts" / "current.pth", weights_only=True)
    assert whole["epoch"] == parts["epoch"] == 3 and whole["curriculum"] == parts["curriculum"]
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, parts["model"][name]), name


def test_checkpoint_of_another_run_is_refused(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    train_args(trainer_args(tmp_path / "f2", "noscope-coral", 2, 1, data_dir=tmp_path / "data"))
    with pytest.raises(ValueError, match="is for dataset noscope-coral, fold 2.*not noscope-coral, fold 4"):
        train_args(trainer_args(tmp_path / "f4", "noscope-coral", 4, 1, data_dir=tmp_path / "data",
                                      continue_from_file=tmp_path / "f2" / "current.pth"))


def test_missing_and_empty_data_give_one_line_errors(tmp_path):
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "noscope-night", "--savedir", tmp_path / "r",
                   "--data_dir", tmp_path / "nothing")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: noscope-night: no data at {tmp_path / 'nothing' / 'noscope-night-subset'}; make it from the NoScope "
        "video and label CSV with util/noscope_video_save.py and util/noscope_split.py (or util/noscope_split.py --video)"]
    (tmp_path / "data" / "noscope-night-subset" / "train" / "0").mkdir(parents=True)
    with pytest.raises(DataMissing, match="no images in .*noscope-night-subset/train"):
        load_splits("noscope-night", data_dir=tmp_path / "data")
    Image.new("RGB", (50, 50)).save(tmp_path / "data" / "noscope-night-subset" / "train" / "0" / "0.png")
    (tmp_path / "data" / "noscope-night-subset" / "val").mkdir()
    with pytest.raises(DataMissing, match="missing or empty split directory .*noscope-night-subset/val"):
        load_splits("noscope-night", data_dir=tmp_path / "data")

    sweep = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "noscope-night", "lol/timer-minutes",
                    "--data_dir", tmp_path / "nothing", "--data_root", tmp_path / "nothing")
    assert sweep.returncode == 2
    assert sweep.stdout.count("skipping ") == 2 and "game_data.tar" in sweep.stdout
    assert sweep.stderr.strip() == ("error: no data for any selected task (see the lines above). Put the data where "
                                    "they say, or try the stand-in demo: python3 train.py runs --demo")


def test_sweep_layout_summary_and_rerun(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(16, 8, 8))
    argv = [sys.executable, "train.py", tmp_path / "runs", "--datasets", "noscope-coral", "lol/timer-minutes",
            "--folds", "2", "1", "--epochs", "1", "--data_dir", tmp_path / "data", "--data_root", tmp_path / "none",
            "--workers", "0"]
    done = run_cli(*argv)
    assert done.returncode == 0, done.stderr
    assert "skipping lol/timer-minutes" in done.stdout
    assert done.stdout.index("noscope-coral fold 1:") < done.stdout.index("noscope-coral fold 2:")  # f=1 first
    for fold, m, kind in ((1, "1", "none"), (2, "1.414", "fold")):
        assert (tmp_path / "runs" / "noscope-coral" / f"fold{fold}" / f"multiplier{m}" / kind / "best.pth").exists()
    summary = lines(tmp_path / "runs" / "summary.csv")
    assert summary[0] == ("dataset,fold,mode,recipe,epochs,best_val_top1,test_top1,worst_slot_test_top1,"
                          "train_images_per_sec,note")
    assert [row.split(",")[:5] for row in summary[1:]] == [["noscope-coral", "1", "original", "paper", "1"],
                                                            ["noscope-coral", "2", "folded", "paper", "1"]]
    again = run_cli(*argv)
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipping") == 2
    assert lines(tmp_path / "runs" / "summary.csv") == summary
    one = run_cli(*argv[:argv.index("--folds")], "--folds", "1", *argv[argv.index("--folds") + 3:])
    assert one.returncode == 0 and one.stdout.count("finished earlier, skipping") == 1
    assert lines(tmp_path / "runs" / "summary.csv") == [summary[0], summary[2], summary[1]]  # f=2's row kept


def test_bad_batch_size_and_fold(tmp_path):
    with pytest.raises(ValueError, match="--batch_size 3 is smaller than the fold 4"):
        train_args(trainer_args(tmp_path, "noscope-coral", 4, 1, batch_size=3))
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "noscope-coral", "--fold", "0", "--savedir", tmp_path)
    assert done.returncode == 2 and "--fold: must be a positive integer, got '0'" in done.stderr


def to_authors_names(state):
    """This project's ResNet-18 state dict under the authors' key names (their model.t7's)."""
    renamed = {}
    for key, tensor in state.items():
        key = key.removeprefix("net.").replace("linear", "fc").replace("shortcut", "downsample")
        if key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            key = f"layer{int(index) // 2 + 1}.{int(index) % 2}.{rest}"
        renamed[key] = tensor
    return renamed


def test_the_authors_teacher_loads_and_gives_the_same_logits(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("cifar10", 1).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so a misplaced tensor shows in the logits
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(std=0.1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
    authors = to_authors_names(model.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight"} <= set(authors)
    torch.save(authors, tmp_path / "model.t7")
    loaded = trainer.load_teacher(tmp_path / "model.t7", get_task("cifar10"), torch.device("cpu"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    torch.save({f"module.{k}": v for k, v in authors.items() if "num_batches" not in k}, tmp_path / "dp.t7")
    trainer.load_teacher(tmp_path / "dp.t7", get_task("cifar10"), torch.device("cpu"))  # DataParallel names
    torch.save({**authors, "layer5.0.conv1.weight": authors["conv1.weight"]}, tmp_path / "extra.t7")
    with pytest.raises(ValueError, match="key 'layer5.0.conv1.weight' is not a key of the authors' ResNet-18"):
        trainer.load_teacher(tmp_path / "extra.t7", get_task("cifar10"), torch.device("cpu"))
    torch.save({k: v for k, v in authors.items() if k != "layer3.1.bn1.weight"}, tmp_path / "short.t7")
    with pytest.raises(ValueError, match="weights do not fit cifar10's FoldedCNN.*Missing key.*net.layers.5.bn1.weight"):
        trainer.load_teacher(tmp_path / "short.t7", get_task("cifar10"), torch.device("cpu"))
    with pytest.raises(ValueError, match="weights do not fit cifar100's FoldedCNN.*size mismatch for net.linear"):
        trainer.load_teacher(tmp_path / "model.t7", get_task("cifar100"), torch.device("cpu"))


def test_trained_teacher_loads_for_distillation(tmp_path):
    model = build_classifier("cifar10", 1)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded = trainer.load_teacher(tmp_path / "model.pth", get_task("cifar10"), torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    with pytest.raises(ValueError, match="weights do not fit cifar100's FoldedCNN at fold 1 .*: size mismatch for net.linear"):
        trainer.load_teacher(tmp_path / "model.pth", get_task("cifar100"), torch.device("cpu"))


def test_bad_images_and_class_folders_are_named(tmp_path):
    root = write_image_folder(tmp_path / "data" / "noscope-taipei-subset", ["0", "1"], (50, 50), per_split=(4, 2, 2))
    (root / "val" / "1" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*val/1/0.png .*replace or delete the file"):
        load_splits("noscope-taipei", data_dir=tmp_path / "data")
    Image.new("RGB", (50, 50)).save(root / "val" / "1" / "0.png")
    Image.new("RGB", (40, 50)).save(root / "test" / "0" / "1.png")
    with pytest.raises(ValueError, match=r"test/0/1.png is 50x40, but the task takes 50x50 images"):
        load_splits("noscope-taipei", data_dir=tmp_path / "data")
    Image.new("RGB", (50, 50)).save(root / "test" / "0" / "1.png")
    (root / "test" / "2").mkdir()
    Image.new("RGB", (50, 50)).save(root / "test" / "2" / "0.png")
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "noscope-taipei", "--savedir", tmp_path / "r",
                   "--data_dir", tmp_path / "data")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: noscope-taipei: class folders of {root / 'test'} (0, 1, 2) "
                                                f"differ from those of {root / 'train'} (0, 1); every split needs "
                                                "the same classes"]


def test_non_finite_loss_stops_the_run(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(64, 4, 4))
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "noscope-coral", "--savedir", tmp_path / "r",
                   "--data_dir", tmp_path / "data", "--lr", "1e30", "--epochs", "2")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: Epoch 0. train: the loss became nan; lower the learning rate")


def test_new_learning_rate_on_resume_keeps_the_schedule():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)
    protocols.set_learning_rate(optimizer, scheduler, 1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)  # one halving so far, kept
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_stats_are_appended_and_a_resume_drops_lines_past_the_checkpoint_and_torn_ones(tmp_path):
    stats = tmp_path / "stats"
    trainer.prepare_savedir(tmp_path, 0)
    for epoch in range(3):
        before = (stats / "val_top1.txt").read_bytes() if epoch else b""
        trainer.append_stats(stats, {"val": {"top1": epoch / 10, "loss": 1.0, "images": 5}})
        after = (stats / "val_top1.txt").read_bytes()
        assert after.startswith(before) and after.count(b"\n") == epoch + 1  # appended, earlier lines untouched
    assert not (stats / "val_images.txt").exists()
    with open(stats / "val_top1.txt", "a") as f:
        f.write("0.9")  # a crash tore the fourth line
    (tmp_path / ".current.pth.tmp").write_bytes(b"half a checkpoint")
    trainer.prepare_savedir(tmp_path, 2)  # the checkpoint holds 2 epochs
    assert (stats / "val_top1.txt").read_text() == "0.000000\n0.100000\n"
    assert (stats / "val_loss.txt").read_text() == "1.000000\n1.000000\n"
    assert not (tmp_path / ".current.pth.tmp").exists()
    trainer.prepare_savedir(tmp_path, 5)  # fewer lines than epochs: nothing to drop, nothing invented
    assert (stats / "val_top1.txt").read_text() == "0.000000\n0.100000\n"


def test_bf16_mixed_precision_training_on_the_cpu(tmp_path):
    """--amp bf16 trains under bf16 autocast (no loss scaling) where the CPU has bf16 instructions; else a clear error."""
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    args = trainer_args(tmp_path / "run", "noscope-coral", 2, 2, data_dir=tmp_path / "data", amp="bf16", lr=0.003)
    if cpu_bf16_problem():
        with pytest.raises(ValueError, match="--amp bf16: precision bf16 on the CPU needs bf16 instructions"):
            train_args(args)
        return
    result = train_args(args)
    test_top1 = lines(tmp_path / "run" / "stats" / "test_top1.txt")
    assert result["epochs"] == 2 and result["test_top1"] == pytest.approx(float(test_top1[result["best_epoch"]]), abs=1e-6)
    losses = [float(v) for v in lines(tmp_path / "run" / "stats" / "train_loss.txt")]
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # finite, no NaN
    state = torch.load(tmp_path / "run" / "current.pth", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())  # fp32 master weights


def test_dry_run_prints_the_protocol_of_every_run_and_touches_nothing(tmp_path):
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--dry_run")
    assert done.returncode == 0, done.stderr
    plans = {(p["dataset"], p["fold"]): p for p in map(json.loads, done.stdout.splitlines())}
    assert len(plans) == 12 * 4 and not (tmp_path / "runs").exists()
    assert all(p["seed"] == 19 and p["precision"] == "fp32" and p["weight_decay"] in (0.0, 1e-5) for p in plans.values())
    coral = plans[("noscope-coral", 3)]
    assert (coral["optimizer"], coral["lr"], coral["epochs"], coral["batch_size"]) == ("rmsprop", 0.001 / 1.5, 50, 30)
    assert coral["loss"] == "cross-entropy" and coral["curriculum"] is None and coral["lr_schedule"] == "constant"
    game = plans[(GAME, 4)]  # 15 classes: start max(15 // 10, 4) = 4, one more every 60 epochs
    assert game["curriculum"] == {"start": 4, "step": 1, "gap": 60} and game["epochs"] == 1500 and game["lr"] == 1e-4
    assert plans[(GAME, 1)]["curriculum"] is None
    slow = plans[("lol/timer-minutes", 4)]
    assert slow["epochs"] == 3000 and slow["curriculum"]["gap"] == 120
    assert plans[("cifar10", 2)]["loss"] == "mse to the teacher's logits" and plans[("cifar10", 2)]["lr_schedule"] == "constant"
    # no teacher anywhere yet: the sweep trains its own f=1 first, and the dry run names where it will be
    assert plans[("cifar10", 2)]["teacher"] == str(tmp_path / "runs" / "cifar10" / "fold1" / "multiplier1" / "none" /
                                                   "best.pth")
    alone = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "cifar10", "--folds", "2", "--dry_run")
    assert alone.returncode == 0 and json.loads(alone.stdout)["teacher"] is None  # none at all: said, not failed
    for key in (("cifar10", 1), ("cifar100", 1), ("cifar100", 3)):
        assert plans[key]["lr_schedule"] == "StepLR(step_size=200, gamma=0.5)" and plans[key]["loss"] == "cross-entropy"
    one = run_cli(sys.executable, "fold_trainer.py", "--dataset", "cifar100", "--fold", "2", "--savedir",
                  tmp_path / "one", "--amp", "bf16", "--dry_run")
    assert one.returncode == 0 and json.loads(one.stdout)["precision"] == "amp bf16" and not (tmp_path / "one").exists()


def test_the_compound_scaled_baseline_trains_reloads_and_exports(tmp_path):
    """--mode efficientnet --fold PHI trains the paper's EfficientNet-style game baseline with the game protocol."""
    task = get_task(GAME)
    write_image_folder(tmp_path / "games" / GAME, task.class_names, task.input_shape[1:])
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--mode", "efficientnet", "--datasets", GAME,
                   "--folds", "2", "--epochs", "2", "--data_root", tmp_path / "games", "--workers", "0",
                   "--device", "cpu", "--lr", "0.003")
    assert done.returncode == 0, done.stderr
    assert f"{GAME} phi 2 epoch 2/2:" in done.stdout and "classes" not in done.stdout  # no curriculum: no folding
    run = tmp_path / "runs" / GAME / "efficientnet" / "phi2"
    result = json.loads((run / "result.json").read_text())
    assert (result["mode"], result["fold"], result["multiplier"]) == ("efficientnet", 2, None)
    assert lines(tmp_path / "runs" / "summary.csv")[1].split(",")[:3] == [GAME, "2", "efficientnet"]
    state = torch.load(run / "best.pth", weights_only=True)
    assert state["model_args"] == {"task": GAME, "fold": 2, "multiplier": None, "mode": "efficientnet", "align": 1}
    classifier, _ = load_classifier(run)
    _, shape = build_model(GAME, 2, "efficientnet")
    assert classifier.hw == shape[1:] == (int(17 / 1.15), int(40 / 1.15))  # its own smaller resolution
    images = torch.rand(6, *task.input_shape)  # plain game crops, any batch size: one image per input
    with torch.no_grad():
        torch.testing.assert_close(classifier(images), classifier.net(
            torch.nn.functional.interpolate(images, size=shape[1:], mode="bilinear", antialias=True)))
    summary = onnx_export.export(run / "best.pth", tmp_path / "baseline.onnx")
    assert summary["input"] == f"N x 3 x {shape[1]} x {shape[2]}" and summary["output"] == "N x 15"
    bad = run_cli(sys.executable, "train.py", tmp_path / "runs", "--mode", "efficientnet", "--datasets",
                  "noscope-coral", "--dry_run")
    assert bad.returncode == 2 and "noscope-coral is a noscope task" in bad.stderr


def test_per_slot_accuracy_shows_a_starved_slot():
    """Top-1 by position in the folded group: a model that always misses slot 2 shows 0 there."""
    labels = torch.tensor([0, 1, 2] * 4)

    def model(images):  # right for slots 0 and 1 of every group of 3, wrong for slot 2
        wrong = torch.arange(len(images)) % 3 == 2
        return torch.nn.functional.one_hot(torch.where(wrong, (labels + 1) % 3, labels), 3).float()
    loss, hits, n = loop.batch_step(model, (torch.zeros(12, 1), labels), 3, torch.device("cpu"), [1],
                                            protocols.Protocol(epochs=1, optimizer="adam", lr=1e-3))
    assert n == 12 and hits == {"top1": 8, "slot0": 4, "slot1": 4, "slot2": 0}
    totals = loop.Totals([1], 3)
    totals.add(loss, hits, n)
    metrics = loop.averages(totals.sums, 3, "test")
    assert loop.slot_top1(metrics, 3) == [1.0, 1.0, 0.0] and metrics["top1"] == pytest.approx(8 / 12)


def test_distilled_students_take_the_fast_precision_where_the_device_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "cpu_bf16_problem", lambda **_: None)
    fast = trainer.fast_amp(cpu)
    assert fast == ("bf16", "auto: a distilled student on a CPU with bf16 instructions")
    specs = {(fold, recipe, amp): build_spec("noscope-coral", fold, recipe=recipe, amp=amp, fast_amp=fast)
             for fold in (1, 2) for recipe in ("paper", "distill") for amp in (None, "fp32")}
    assert {k: (s.precision, s.precision_choice) for k, s in specs.items() if k[2] is None} == {
        (1, "paper", None): ("fp32", "the paper's"), (1, "distill", None): ("fp32", "the paper's"),
        (2, "paper", None): ("fp32", "the paper's"), (2, "distill", None): ("amp bf16", fast[1])}
    assert all(s.precision == "fp32" and s.precision_choice == "given" for k, s in specs.items() if k[2] == "fp32")
    monkeypatch.setattr(trainer, "cpu_bf16_problem", lambda **_: "no bf16 instructions")
    assert trainer.fast_amp(cpu) == (None, "auto: a distilled student, and cpu has no bf16 instructions")
    # on CUDA fp32: autocast stepped these CNNs slower on an H200 (results/h200/README.md)
    assert trainer.fast_amp(torch.device("cuda"))[0] is None


def test_a_finished_run_of_another_precision_is_not_passed_off(tmp_path):
    write_image_folder(tmp_path / "data" / "noscope-coral-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    argv = [sys.executable, "train.py", tmp_path / "runs", "--datasets", "noscope-coral", "--folds", "1", "--epochs",
            "1", "--data_dir", tmp_path / "data", "--device", "cpu"]
    assert run_cli(*argv).returncode == 0
    result = json.loads((tmp_path / "runs" / "noscope-coral" / "fold1" / "multiplier1" / "none" / "result.json")
                        .read_text())
    assert result["precision"] == "fp32"
    if cpu_bf16_problem():
        return  # bf16 cannot run here: nothing else to refuse
    again = run_cli(*argv, "--amp", "bf16")
    assert again.returncode == 2 and "was trained in fp32, and this command trains in amp bf16 (given): pass --amp " \
        "fp32 to continue it" in again.stderr
