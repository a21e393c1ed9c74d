"""The distill recipe: its losses and schedule, the cached teacher logits, resume, torchrun and a user's own task."""
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import train
from config import tasks
from datasets import load_splits
from datasets.loaders import collate
from helpers import (assert_same_stats, run_cli, train_args, train_until_first_checkpoint, trainer_args,
                     write_image_folder)
from models import build_classifier
from util.train import loop, protocol as protocols, sweep, trainer

TASK = "noscope-coral"


def protocol(**changes):
    return protocols.Protocol(epochs=1, optimizer="adam", lr=1e-3, **changes)


def test_the_distillation_losses():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 5), torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    ce = F.cross_entropy(student, labels)
    assert protocols.training_loss(student, labels, None, protocol()) == ce
    mse = protocols.training_loss(student, labels, teacher, protocol(loss="mse"))
    assert mse == pytest.approx(((student - teacher) ** 2).mean().item())
    p_t = F.softmax(teacher / 4, dim=1)  # KL(teacher || student) at T = 4, times T^2, averaged over the images
    kl = (p_t * (p_t.log() - F.log_softmax(student / 4, dim=1))).sum(1).mean() * 16
    assert protocols.training_loss(student, labels, teacher, protocol(loss="kl", temperature=4)).item() == \
        pytest.approx(kl.item(), rel=1e-5)
    assert protocols.training_loss(student, labels, student, protocol(loss="kl", temperature=4)).item() == \
        pytest.approx(0, abs=1e-6)  # a student that equals its teacher has nothing to learn
    mixed = protocols.training_loss(student, labels, teacher, protocol(loss="mse+ce"))
    assert mixed.item() == pytest.approx((mse.item() + ce.item()) / 2)


def test_slot_balance_weighs_each_slot_by_its_loss():
    torch.manual_seed(1)
    teacher = torch.randn(8, 5)
    student = teacher.clone()
    student[3::4] += 3 * torch.randn(2, 5)  # slot 3 of both groups of 4 lags behind
    student.requires_grad_(True)
    kl = protocol(loss="kl", temperature=4)
    per_image = F.kl_div(F.log_softmax(student / 4, dim=1), F.log_softmax(teacher / 4, dim=1), log_target=True,
                         reduction="none").sum(1) * 16
    slots = per_image.reshape(2, 4).mean(0)
    balanced = protocols.training_loss(student, None, teacher, dataclasses.replace(kl, slot_balance=True), 4)
    assert balanced.item() == pytest.approx(((slots / slots.mean()) * slots).mean().item(), rel=1e-5)
    assert protocols.training_loss(student, None, teacher, kl, 4).item() == \
        pytest.approx(per_image.mean().item(), rel=1e-5)  # off: the plain mean, as before
    lagging = torch.autograd.grad(balanced, student)[0][3::4].norm() / \
        torch.autograd.grad(protocols.training_loss(student, None, teacher, kl, 4), student)[0][3::4].norm()
    assert lagging > 2  # the lagging slot gets more of the gradient than under the plain mean
    assert protocols.training_loss(student, None, teacher, dataclasses.replace(kl, slot_balance=True),
                                      1).item() == pytest.approx(per_image.mean().item(), rel=1e-5)


def test_the_learning_rate_curves():
    onecycle = [protocols.lr_factor("onecycle", p) for p in (0, 0.15, 0.3, 0.65, 1)]
    assert onecycle == pytest.approx([1 / 25, (1 + 1 / 25) / 2, 1, 0.5, 0], abs=1e-9)
    assert protocols.lr_factor("cosine", 0.5) == pytest.approx(0.5) and protocols.lr_factor("cosine", 0) == 1
    assert protocols.lr_factor("constant", 0.7) == protocols.lr_factor("step", 0.7) == 1


def test_the_slot_curriculum_repeats_one_image_of_a_group_in_every_slot():
    torch.manual_seed(0)
    images, labels = torch.arange(12.).reshape(12, 1, 1, 1), torch.arange(12)
    teacher = labels[:, None].float().repeat(1, 3)
    repeated = protocols.repeat_groups((images, labels, teacher), 4, 1.0)
    for part in repeated:  # every group: one of its own images, in all four slots, with its label and logits
        groups = part.reshape(3, 4, -1)[..., 0]
        assert (groups == groups[:, :1]).all()
        assert all(int(g[0]) // 4 == i for i, g in enumerate(groups))
    assert all(torch.equal(a, b) for a, b in zip(protocols.repeat_groups((images, labels, teacher), 4, 0.0),
                                                 (images, labels, teacher)))
    torch.manual_seed(1)
    half = protocols.repeat_groups((torch.arange(4000.), torch.arange(4000)), 4, 0.5)[1].reshape(-1, 4)
    assert 0.4 < (half == half[:, :1]).all(dim=1).float().mean() < 0.6  # about half the groups repeat
    schedule = protocol(repeat=0.4)
    assert protocols.group_transform(schedule, 4, 0.5) is None and protocols.group_transform(schedule, 1, 0) is None
    assert protocols.group_transform(dataclasses.replace(schedule, mixup=0.2), 4, 0.9) is not None


def test_mixup_mixes_groups_slot_by_slot_with_the_teachers_logits():
    torch.manual_seed(3)
    images = torch.arange(8.).reshape(8, 1, 1, 1)
    labels, teacher = torch.arange(8), torch.arange(8.)[:, None] * torch.ones(1, 2)
    mixed, kept, logits = protocols.mixup_groups((images, labels, teacher), 4, 0.4)
    assert torch.equal(kept, labels)
    lam = (mixed.flatten() - images.flatten()[[4, 5, 6, 7, 0, 1, 2, 3]]) / 4 * torch.tensor([-1.] * 4 + [1.] * 4)
    if not torch.equal(mixed, images):  # two groups: mixed with the other one, slot by slot, or with itself
        assert torch.allclose(lam, lam[0]) and 0 < lam[0] < 1
    assert torch.allclose(logits[:, 0], mixed.flatten()) and torch.allclose(logits[:, 1], mixed.flatten())


def test_shift_moves_each_image_by_at_most_the_given_pixels():
    torch.manual_seed(2)
    images, labels = torch.rand(16, 3, 10, 12), torch.arange(16)
    moved, kept = protocols.shift_images((images, labels), 2)
    assert moved.shape == images.shape and torch.equal(kept, labels)
    padded = F.pad(images, (2,) * 4, mode="replicate")
    offsets = [next((dy, dx) for dy in range(5) for dx in range(5)
                    if torch.equal(moved[i], padded[i, :, dy:dy + 10, dx:dx + 12])) for i in range(16)]
    assert len(set(offsets)) > 1  # each image its own offset
    assert protocols.shift_images((images, labels), 0)[0] is images


def test_the_recipe_resolves_and_the_paper_stays_exact(tmp_path):
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", TASK, "sot/timer3", "--recipe",
                   "distill", "--dry_run")
    assert done.returncode == 0, done.stderr
    plans = {(p["dataset"], p["fold"]): p for p in map(json.loads, done.stdout.splitlines())}
    for task, schedule in ((TASK, "constant"), ("sot/timer3", "one-cycle (per batch)")):
        original, folded = plans[(task, 1)], plans[(task, 3)]
        assert original["loss"] == "cross-entropy" and original["recipe"] == "paper"  # the teacher: as the paper
        game = task == "sot/timer3"  # game students: 32 folded inputs per batch at 1e-3 x sqrt(f)
        assert folded["loss"] == ("mean of kl to the teacher's softened outputs and cross-entropy" if game else
                                  "kl to the teacher's softened outputs") and folded["temperature"] == 4.0
        assert folded["ema"] == (0.99 if game else None) and original["ema"] is None
        assert (folded["optimizer"], folded["lr"], folded["lr_schedule"], folded["curriculum"]) == \
            ("adam", pytest.approx(1e-3 * (3 ** 0.5 if game else 1)), schedule, None)
        assert (folded["batch_size"], original["batch_size"]) == (96 if game else 30, 32)
        assert folded["slot_balance"] == (task == "sot/timer3") and not original["slot_balance"]
        assert folded["shift"] == (None if task == "sot/timer3" else 12) and original["shift"] is None
    paper = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "3",
                    "--dry_run")
    plan = json.loads(paper.stdout)
    assert (plan["loss"], plan["lr"], plan["lr_schedule"]) == ("cross-entropy", 1e-4, "constant") and plan["curriculum"]
    mixed = run_cli(sys.executable, "fold_trainer.py", "--dataset", "sot/timer3", "--fold", "2", "--savedir",
                    tmp_path / "one", "--recipe", "distill", "--distill_loss", "mse+ce", "--curriculum", "on",
                    "--lr_schedule", "cosine", "--lr", "3e-4", "--dry_run")
    plan = json.loads(mixed.stdout)
    assert plan["loss"].startswith("mean of mse") and plan["curriculum"] and plan["lr"] == 3e-4
    assert plan["lr_schedule"] == "cosine (per batch)" and not (tmp_path / "one").exists()
    extras = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "1", "4",
                     "--recipe", "distill", "--repeat", "0.3", "--mixup", "0.2", "--shift", "3", "--weight_decay", "0",
                     "--dry_run")
    plans = {p["fold"]: p for p in map(json.loads, extras.stdout.splitlines())}
    assert [plans[4][k] for k in ("repeat", "mixup", "shift", "weight_decay")] == [0.3, 0.2, 3, 0.0]
    assert [plans[1][k] for k in ("repeat", "mixup", "shift", "weight_decay")] == [None, None, None, 0.0]  # teacher


def test_epochs_are_the_originals_and_distilled_students_train_the_recipes_multiple(tmp_path, capsys):
    def plans(*flags, command="train.py"):
        done = run_cli(sys.executable, command, *flags, "--dry_run")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    sweep_plan = plans(tmp_path / "runs", "--datasets", TASK, "sot/timer3", "--folds", "1", "3", "--recipe", "distill",
                       "--epochs", "10")
    assert {(p["dataset"], p["fold"]): p["epochs"] for p in sweep_plan} == {
        (TASK, 1): 10, (TASK, 3): 12, ("sot/timer3", 1): 10, ("sot/timer3", 3): 30}  # 1.2x NoScope, 3x game
    assert sweep_plan[-1]["epochs_choice"] == ("the distill recipe's student budget: 30 = 3x the original's 10 epochs, "
                                               "at most those that fit in 1.8x its training seconds (timed when the "
                                               "student starts)")
    assert [p["seconds_bound"] for p in sweep_plan] == [None, 1.8, None, 1.8]
    given = plans(tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "1", "4", "--recipe", "distill",
                  "--epochs", "10", "--student_epochs", "7")
    assert [(p["epochs"], p["epochs_choice"], p["seconds_bound"]) for p in given] == [
        (10, "given", None), (7, "given (--student_epochs)", None)]
    paper = plans(tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "4", "--epochs", "10")
    assert paper[0]["epochs"] == 10  # --recipe paper's folded runs: --epochs as given
    one = plans("--dataset", "sot/timer3", "--fold", "4", "--recipe", "distill", "--epochs", "10", "--savedir",
                tmp_path / "one", command="fold_trainer.py")
    assert one[0]["epochs"] == 10  # fold_trainer.py trains one run: its --epochs are that run's

    # a student finished under another budget is reported and kept, not stretched onto another schedule
    (spec,) = sweep.plan(tmp_path / "runs", ["sot/timer3"], [4], {**train.spec_settings(
        train.get_args_parser().parse_args([str(tmp_path / "runs"), "--recipe", "distill", "--epochs", "10"])),
        "student_epochs": None}, need_teacher=False)[0][1]
    Path(spec.savedir).mkdir(parents=True)
    finished_earlier = {"epochs": 10, "test_top1": 0.5, "precision": spec.precision}
    (Path(spec.savedir) / "result.json").write_text(json.dumps(finished_earlier))
    (Path(spec.savedir) / "current.pth").write_bytes(b"")
    finished, resume = sweep.resume_point(spec, trainer.Options())
    assert finished["epochs"] == 10 and resume is None
    assert ("finished earlier with 10 epochs, and the distill recipe's student budget: 30 = 3x the original's 10 "
            "epochs, at most those that fit in 1.8x its training seconds (timed when the student starts); kept as it "
            "is") in capsys.readouterr().out


def test_the_summary_notes_a_student_that_fell_far_behind(tmp_path, monkeypatch, capsys):
    results = {1: {"best_val_top1": 0.80, "teacher_val_top1": None}, 2: {"best_val_top1": 0.78, "teacher_val_top1": 0.8},
               4: {"best_val_top1": 0.35, "teacher_val_top1": None}}  # f=4 has no teacher's: held against f=1's
    monkeypatch.setattr(sweep, "train_one", lambda spec, *_: {"dataset": spec.dataset, "fold": spec.fold,
                                                                   "mode": spec.mode, **results[spec.fold]})
    monkeypatch.setattr(sweep, "data_ready", lambda source, options: None)
    units = sweep.plan(tmp_path, [TASK], [1, 2, 4], {**train.spec_settings(train.get_args_parser().parse_args(
        [str(tmp_path), "--recipe", "distill"])), "student_epochs": None}, need_teacher=False)
    rows, _, _ = sweep.train_units(units)
    assert [r["note"] for r in rows[:2]] == [None, None]
    assert rows[2]["note"].startswith(f"{TASK} fold 4 fell behind: best validation top-1 0.350, 45.0 points below "
                                      "the original (f=1)'s 0.800")
    summary = sweep.write_summary(rows, tmp_path / "summary.csv")
    assert summary["note"].notna().sum() == 1 and "note" in (tmp_path / "summary.csv").read_text().splitlines()[0]


def noscope_data(tmp_path, per_split=(24, 8, 8)):
    data = tmp_path / "data"
    write_image_folder(data / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=per_split)
    return data


def test_distill_caches_the_teacher_logits_and_resumes_on_the_same_curve(tmp_path, monkeypatch):
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, lr=3e-3))
    teacher = tmp_path / "f1" / "best.pth"
    common = dict(data_dir=data, recipe="distill", teacher=teacher, batch_size=8)
    whole = train_args(trainer_args(tmp_path / "whole", TASK, 2, 3, **common))
    assert whole["recipe"] == "distill" and len(whole["test_slot_top1"]) == 2
    cached = torch.load(tmp_path / "whole" / "teacher_logits_train.pt", weights_only=True)
    assert cached["logits"].shape == (48, 2) and cached["targets"].shape == (48,)

    computed = []

    def counting_logits(teacher, data, device, cache):  # the default targets, counted through the extension point
        if not cache.exists():
            computed.append(cache.name)
        return trainer.teacher_logits(teacher, data, device, cache)

    counting = trainer.Hooks(targets=counting_logits)
    train_until_first_checkpoint(trainer_args(tmp_path / "parts", TASK, 2, 3, **common), monkeypatch, counting)
    assert sorted(computed) == [f"teacher_logits_{s}.pt" for s in ("test", "train", "val")]
    resumed = train_args(trainer_args(tmp_path / "parts", TASK, 2, 3, continue_from_file=tmp_path / "parts" /
                                             "current.pth", **common), counting)
    assert len(computed) == 3  # the resume read the cache
    assert_same_stats(tmp_path / "whole", tmp_path / "parts")  # the one-cycle rate followed the same curve
    assert resumed["test_top1"] == whole["test_top1"]

    with pytest.raises(ValueError, match="trained with --recipe distill: resume it with that recipe"):
        train_args(trainer_args(tmp_path / "parts", TASK, 2, 4, data_dir=data,
                                       continue_from_file=tmp_path / "parts" / "current.pth"))


@pytest.mark.slow
def test_consistent_teaching_gives_the_teachers_logits_of_the_augmented_view(tmp_path, monkeypatch):
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    images, labels = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1])
    moved = trainer.consistent_targets((images, labels, torch.zeros(4, 2)), teacher, torch.device("cpu"))
    assert torch.equal(moved[2], teacher(images).detach()) and moved[0] is images

    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, lr=3e-3))
    common = dict(data_dir=data, recipe="distill", teacher=tmp_path / "f1" / "best.pth", batch_size=8, shift=2)
    seen = []
    real = trainer.consistent_targets
    monkeypatch.setattr(trainer, "consistent_targets", lambda batch, *rest: seen.append(1) or real(batch, *rest))
    whole = train_args(trainer_args(tmp_path / "whole", TASK, 2, 2, consistent="on", **common))
    assert len(seen) == 12 and whole["epochs"] == 2  # every training batch: 48 images in batches of 8, 2 epochs
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["consistent"] is True
    train_until_first_checkpoint(trainer_args(tmp_path / "parts", TASK, 2, 2, consistent="on", **common), monkeypatch)
    train_args(trainer_args(tmp_path / "parts", TASK, 2, 2, consistent="on", **common,
                            continue_from_file=tmp_path / "parts" / "current.pth"))
    assert_same_stats(tmp_path / "whole", tmp_path / "parts")  # a resume gives the uninterrupted run's stats
    with pytest.raises(ValueError, match="was trained with consistent True.*pass --consistent on to continue it"):
        train_args(trainer_args(tmp_path / "parts", TASK, 2, 3, consistent="off", **common,
                                continue_from_file=tmp_path / "parts" / "current.pth"))


def test_the_weight_average_follows_its_decay():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    average = loop.WeightAverage(model, 0.9)
    optimizer.register_step_post_hook(average.update)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        model(torch.randn(4, 3)).square().mean().backward()
        optimizer.step()
        for k, v in model.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v if v.is_floating_point() else v.clone()
    for k, v in average.model.state_dict().items():
        assert torch.allclose(v, expected[k]), k
    assert not torch.equal(average.model[0].weight, model[0].weight)


def test_an_averaged_student_saves_and_resumes_its_average(tmp_path, monkeypatch):
    """--ema: validation, test and best.pth use the average; current.pth keeps the training weights beside it, so a
    resumed run equals an uninterrupted one."""
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, lr=3e-3))
    common = dict(data_dir=data, recipe="distill", teacher=tmp_path / "f1" / "best.pth", batch_size=8, ema=0.5)
    whole = train_args(trainer_args(tmp_path / "whole", TASK, 2, 3, **common))
    run = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert run["ema"] == 0.5
    state = torch.load(tmp_path / "whole" / "current.pth", weights_only=True)
    assert any(not torch.equal(v, state["training_model"][k]) for k, v in state["model"].items())
    best = torch.load(tmp_path / "whole" / "best.pth", weights_only=True)
    model = build_classifier(tasks.get_task(TASK), 2)
    model.load_state_dict(best["model"])  # the averaged weights score what the run reported
    test = torch.utils.data.DataLoader(load_splits(TASK, 2, data)["test"], 8, collate_fn=collate)
    sums = loop.evaluate(model, test, 2, torch.device("cpu"), 2, "test",
                         protocols.paper_protocol(tasks.get_task(TASK), 2))
    assert loop.averages(sums, 2, "test")["top1"] == whole["test_top1"]

    train_until_first_checkpoint(trainer_args(tmp_path / "parts", TASK, 2, 3, **common), monkeypatch)
    resumed = train_args(trainer_args(tmp_path / "parts", TASK, 2, 3, continue_from_file=tmp_path / "parts" /
                                      "current.pth", **common))
    assert_same_stats(tmp_path / "whole", tmp_path / "parts")
    assert resumed["test_top1"] == whole["test_top1"]
    parts = torch.load(tmp_path / "parts" / "current.pth", weights_only=True)
    for key in ("model", "training_model"):
        for name, tensor in state[key].items():
            assert torch.equal(tensor, parts[key][name]), (key, name)


def test_a_stale_cache_is_recomputed(tmp_path):
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data))
    savedir = tmp_path / "f2"
    savedir.mkdir()
    torch.save(torch.zeros(3, 2), savedir / "teacher_logits_train.pt")  # another run's (an older format's) cache
    train_args(trainer_args(savedir, TASK, 2, 1, data_dir=data, recipe="distill", teacher=tmp_path / "f1" /
                                   "best.pth"))
    assert torch.load(savedir / "teacher_logits_train.pt", weights_only=True)["logits"].shape == (48, 2)


@pytest.mark.slow
def test_torchrun_distills_with_one_teacher_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on a 2-core machine
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data))
    done = run_cli(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "fold_trainer.py", "--dataset", TASK, "--fold", "2", "--epochs", "2", "--savedir", tmp_path / "f2",
                   "--data_dir", data, "--device", "cpu", "--workers", "0", "--batch_size", "8", "--recipe", "distill",
                   "--teacher", tmp_path / "f1" / "best.pth")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("teacher ") == 1 and done.stdout.count(f"{TASK} fold 2 epoch 2/2:") == 1
    result = json.loads((tmp_path / "f2" / "result.json").read_text())
    assert result["recipe"] == "distill" and result["epochs"] == 2
    assert torch.load(tmp_path / "f2" / "current.pth", weights_only=True)["train_images"] == 2 * 48


def test_a_task_added_as_a_config_folder_trains_with_both_recipes(tmp_path, monkeypatch):
    """A user's own game task: a folder in config/ with a model_description.json, nothing else."""
    config = tmp_path / "config"
    shutil.copytree(tasks.CONFIG_DIR, config, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (config / "mine" / "digits").mkdir(parents=True)
    (config / "mine" / "digits" / "model_description.json").write_text(json.dumps({
        "family": "game", "input": [3, 12, 20], "class_names": ["a", "b", "c", "d"],
        "architecture": {"template": "1_3s_1_convnet", "conv_units": 1, "first_channels": 8, "unit_channels": 8,
                         "last_channels": 4}}))
    monkeypatch.setattr(tasks, "CONFIG_DIR", config)
    tasks.all_tasks.cache_clear()
    try:
        write_image_folder(tmp_path / "games" / "mine" / "digits", ["a", "b", "c", "d"], (12, 20), per_split=(16, 4, 4))
        common = [str(tmp_path / "runs"), "--datasets", "mine/digits", "--epochs", "2", "--data_root",
                  str(tmp_path / "games"), "--device", "cpu", "--batch_size", "8"]
        train.main([*common, "--folds", "1", "2"])
        train.main([*common, "--folds", "1", "2", "--recipe", "distill"])
        paper = sweep.run_result(tmp_path / "runs", "mine/digits", 2, "paper")
        distill = sweep.run_result(tmp_path / "runs", "mine/digits", 2, "distill")
        assert paper["recipe"] == "paper" and distill["recipe"] == "distill"
        assert len(distill["test_slot_top1"]) == 2 and 0 <= distill["worst_slot_test_top1"] <= distill["test_top1"]
        summary = (tmp_path / "runs" / "summary.csv").read_text().splitlines()
        assert [row.split(",")[:4] for row in summary[1:]] == [["mine/digits", "2", "folded", "paper"],  # kept
                                                               ["mine/digits", "1", "original", "paper"],
                                                               ["mine/digits", "2", "folded", "distill"]]
    finally:
        tasks.all_tasks.cache_clear()


@pytest.mark.slow
def test_the_accuracy_table_trains_both_recipes_and_writes_csv_and_markdown(tmp_path):
    from util import accuracy_table
    out = tmp_path / "results" / "table"
    # small stand-in data already in place, so the sweep trains on it instead of generating the full stand-in
    write_image_folder(tmp_path / "data" / f"{tasks.SYNTHETIC}{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 8, 8))
    accuracy_table.main([str(tmp_path / "runs"), "--out", str(out), "--tasks", TASK, "--noscope_epochs", "1",
                         "--noscope_student_epochs", "2", "--data_dir", str(tmp_path / "data"), "--device", "cpu"])
    rows = [line.split(",") for line in (tmp_path / "results" / "table.csv").read_text().splitlines()]
    assert rows[0] == accuracy_table.COLUMNS
    assert [(r[1], r[2]) for r in rows[1:]] == [("1", "original")] + [(str(f), r) for f in (2, 3, 4)
                                                                       for r in ("paper", "distill")]
    original = sweep.run_result(tmp_path / "runs", f"{tasks.SYNTHETIC}{TASK}", 1)
    for r in rows[1:]:
        assert r[0] == TASK and r[3] == ("2" if r[2] == "distill" else "1")  # students: their own epochs
        assert float(r[5]) == pytest.approx(float(rows[1][4]) - float(r[4]), abs=2e-4)
        result = sweep.run_result(tmp_path / "runs", f"{tasks.SYNTHETIC}{TASK}", int(r[1]),
                                  "paper" if r[2] == "original" else r[2])
        # seconds over f=1's, from the unrounded seconds (the CSV's 4 decimals of a run of a few hundredths are not)
        assert float(r[8]) == pytest.approx(result["train_seconds"] / original["train_seconds"], abs=6e-5)
    text = (tmp_path / "results" / "table.md").read_text()
    assert "| noscope | distill |" in text and "| noscope-coral | 4 | distill |" in text and "1 for NoScope" in text
    accuracy_table.main([str(tmp_path / "runs"), "--out", str(out), "--tasks", TASK, "noscope-night", "--no_train"])
    text = (tmp_path / "results" / "table.md").read_text()  # noscope-night never ran: left out, and said so
    assert "7 of the runs had not finished" in text and "noscope-night" not in text.split("## Every run")[1]
    accuracy_table.main([str(tmp_path / "runs"), "--out", str(out), "--tasks", TASK, "--noscope_epochs", "1",
                         "--noscope_student_epochs", "2", "--data_dir", str(tmp_path / "data"), "--device", "cpu",
                         "--folds", "4", "--recipes", "distill", "--seeds", "19", "20"])
    assert (tmp_path / "runs" / "seed20" / f"{tasks.SYNTHETIC}{TASK}").is_dir()  # seed 19's runs were reused
    rows = [line.split(",") for line in (tmp_path / "results" / "table.csv").read_text().splitlines()]
    assert [(r[1], r[2], r[10]) for r in rows[1:]] == [("1", "original", "19"), ("4", "distill", "19"),
                                                       ("1", "original", "20"), ("4", "distill", "20")]
    spread = (tmp_path / "results" / "table.md").read_text().split("## Spread over the seeds")[1]
    gaps = ", ".join(f"{100 * float(r[5]):.1f}" for r in rows[1:] if r[1] == "4")
    assert f"| {TASK} | 4 | distill | 2 | {gaps} |" in spread


def test_the_accuracy_table_trains_each_dataset_with_its_students_before_the_next_within_the_image_budget(tmp_path, monkeypatch):
    from util import accuracy_table
    calls = []  # a folded run's seconds are compared with its original's: the two run minutes apart, not a sweep apart
    monkeypatch.setattr(accuracy_table, "sweep", lambda root, datasets, folds, settings, options:
                        calls.append((datasets, folds, settings["recipe"], settings["epochs"],
                                      settings["student_epochs"])))
    # coral's training split holds 1000 images, night's 100: 5000 images come before coral's 12 epochs, not night's
    monkeypatch.setattr(accuracy_table, "load_splits",
                        lambda dataset, **kw: {"train": range(1000 if "coral" in dataset else 100)})
    args, args.train_flags = accuracy_table.get_args_parser().parse_known_args(
        [str(tmp_path), "--out", str(tmp_path / "table"), "--tasks", "noscope-coral", "noscope-night", "--folds", "4",
         "--recipes", "distill", "--student_images", "5000"])
    accuracy_table.train_family(args, "noscope", 19)
    coral, night = (f"{tasks.SYNTHETIC}noscope-{name}" for name in ("coral", "night"))
    assert calls == [([coral], [1], "paper", 10, None), ([coral], [4], "distill", 10, 5),
                     ([night], [1], "paper", 10, None), ([night], [4], "distill", 10, 12)]
    args.student_images = None  # the default: the recipe's budget, as train.py gives it (1.2x for NoScope: 12)
    calls.clear()
    accuracy_table.train_family(args, "noscope", 19)
    assert calls[1] == ([coral], [4], "distill", 10, None)


def test_game_students_start_with_their_slots_apart_and_noscope_centred_on_data(tmp_path):
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "noscope-coral",
                   "--recipe", "distill", "--dry_run")
    plans = {(p["dataset"], p["fold"]): p["init"] for p in map(json.loads, done.stdout.splitlines())}
    assert plans == {("sot/timer3", 1): None, ("sot/timer3", 2): "separate", ("sot/timer3", 3): "separate",
                     ("sot/timer3", 4): "separate", ("noscope-coral", 1): None, ("noscope-coral", 2): "data",
                     ("noscope-coral", 3): "data", ("noscope-coral", 4): "data"}
    fresh = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "4",
                    "--recipe", "distill", "--init", "fresh", "--dry_run")
    assert json.loads(fresh.stdout)["init"] == "fresh"


def test_the_demo_distils_its_folded_models(tmp_path):
    done = run_cli(sys.executable, "train.py", tmp_path / "runs", "--demo", "--dry_run")
    assert done.returncode == 0, done.stderr
    plans = {(p["dataset"], p["fold"]): p for p in map(json.loads, done.stdout.splitlines())}
    game, coral = "synthetic-sot/coin_count-digits_3_4-v2", "synthetic-noscope-coral"
    assert set(plans) == {(game, 1), (game, 4), (coral, 1), (coral, 4)}
    assert (plans[(game, 1)]["loss"], plans[(game, 1)]["lr"], plans[(game, 1)]["epochs"]) == ("cross-entropy", 3e-4, 40)
    assert (plans[(game, 4)]["recipe"], plans[(game, 4)]["lr"], plans[(game, 4)]["epochs"]) == ("distill", 2e-3, 120)
    assert plans[(coral, 4)]["loss"].startswith("kl") and plans[(coral, 4)]["epochs"] == 12
    assert plans[(game, 4)]["savedir"].endswith("fold4/multiplier2/distill")
    paper = run_cli(sys.executable, "train.py", tmp_path / "runs", "--demo", "--recipe", "paper", "--dry_run")
    assert all(json.loads(line)["loss"] == "cross-entropy" for line in paper.stdout.splitlines())


def test_the_original_is_shared_by_both_recipes(tmp_path):
    """f=1 trains as the paper's under either recipe: a run started under one resumes under the other."""
    data = noscope_data(tmp_path)
    first = train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, recipe="distill"))
    resumed = train_args(trainer_args(tmp_path / "f1", TASK, 1, 2, data_dir=data, recipe="paper",
                                             continue_from_file=tmp_path / "f1" / "current.pth"))
    assert first["recipe"] == resumed["recipe"] == "paper" and resumed["epochs"] == 2


def test_accuracy_curves_plot_top1_against_training_seconds(tmp_path, capsys):
    from util import accuracy_curves

    def fake_run(name, dataset, top1, seconds=None, total=None):
        run = tmp_path / name
        (run / "stats").mkdir(parents=True)
        (run / "stats" / "test_top1.txt").write_text("".join(f"{v}\n" for v in top1))
        if seconds:
            (run / "stats" / "train_seconds.txt").write_text("".join(f"{v}\n" for v in seconds))
        (run / "result.json").write_text(json.dumps({"dataset": dataset, "fold": 4, "train_seconds": total or seconds[-1]}))
        return run

    new = fake_run("new", "synthetic-noscope-taipei", [0.5, 0.9, 1.0], seconds=[2.0, 5.0, 9.0])
    old = fake_run("old", "synthetic-noscope-taipei", [0.5, 0.7], total=10.0)
    other = fake_run("other", "sot/timer3", [0.1, 0.2], seconds=[1.0, 2.0])
    assert accuracy_curves.curve(new) == ("synthetic-noscope-taipei", 4, [2.0, 5.0, 9.0], [0.5, 0.9, 1.0], False)
    assert accuracy_curves.curve(old)[2:] == ([5.0, 10.0], [0.5, 0.7], True)  # no seconds file: spread evenly
    assert accuracy_curves.parse_run(f"{new}=f=4, new") == (str(new), "f=4, new")
    accuracy_curves.main([f"{new}=new", str(old), str(other), "--out", str(tmp_path / "curves.png")])
    assert (tmp_path / "curves.png").stat().st_size > 0 and "3 runs of 2 task(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        accuracy_curves.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2 and "not a finished run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_variant_of_training_reaches_the_trainer_through_its_hooks(tmp_path):
    """docs/examples/feature_distill.py passes its own targets, model and loss as trainer.Hooks (nothing patched): the
    student trains differently from the recipe's at the same seed, and its best.pth loads as a plain student."""
    import importlib.util

    from helpers import REPO
    from util.train.checkpoint import load_classifier
    spec = importlib.util.spec_from_file_location("feature_distill", REPO / "docs" / "examples" / "feature_distill.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, lr=3e-3))
    teacher = tmp_path / "f1" / "best.pth"
    train_args(trainer_args(tmp_path / "plain", TASK, 2, 2, data_dir=data, recipe="distill", teacher=teacher,
                            batch_size=8))
    result = example.main([TASK, "--fold", "2", "--epochs", "2", "--teacher", str(teacher), "--savedir",
                           str(tmp_path / "fd"), "--batch_size", "8", "--device", "cpu", "--data_dir", str(data)])
    assert result["epochs"] == 2 and (tmp_path / "fd" / "result.json").exists()
    student, state = load_classifier(tmp_path / "fd" / "best.pth")  # strict: no head left in it
    plain, _ = load_classifier(tmp_path / "plain" / "best.pth")
    assert not any(k.startswith(example.HEADS) for k in state["model"])
    assert any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(), plain.state_dict().values()))


def test_a_student_with_batchnorm_saves_its_own_architecture_and_resumes_exactly(tmp_path, monkeypatch):
    """--batchnorm on (here with the teacher start, which sees the model's own architecture): best.pth holds the plain model (BatchNorm folded into the convs) that scores what the run
    reported; current.pth keeps the BatchNorm of the live and the averaged weights, so a resume equals the whole run."""
    data = noscope_data(tmp_path)
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data, lr=3e-3))
    common = dict(data_dir=data, recipe="distill", teacher=tmp_path / "f1" / "best.pth", batch_size=8, ema=0.5,
                  batchnorm="on", init="teacher")
    whole = train_args(trainer_args(tmp_path / "whole", TASK, 4, 3, **common))
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["batchnorm"] is True
    best = torch.load(tmp_path / "whole" / "best.pth", weights_only=True)
    model = build_classifier(tasks.get_task(TASK), 4)
    model.load_state_dict(best["model"])  # strict: the plain architecture's keys exactly
    test = torch.utils.data.DataLoader(load_splits(TASK, 4, data)["test"], 8, collate_fn=collate)
    sums = loop.evaluate(model, test, 4, torch.device("cpu"), 2, "test",
                         protocols.paper_protocol(tasks.get_task(TASK), 4))
    assert loop.averages(sums, 4, "test")["top1"] == whole["test_top1"]
    assert any(".norm." in key for key in best["training_model"]) and best["averaged_model"]

    train_until_first_checkpoint(trainer_args(tmp_path / "parts", TASK, 4, 3, **common), monkeypatch)
    with pytest.raises(ValueError, match="--batchnorm on"):
        train_args(trainer_args(tmp_path / "parts", TASK, 4, 3, continue_from_file=tmp_path / "parts" / "current.pth",
                                **{**common, "batchnorm": "off"}))
    train_args(trainer_args(tmp_path / "parts", TASK, 4, 3, continue_from_file=tmp_path / "parts" / "current.pth",
                            **common))
    assert_same_stats(tmp_path / "whole", tmp_path / "parts")


def test_a_student_trains_the_epochs_that_fit_in_the_recipes_seconds_and_keeps_them(tmp_path, capsys):
    """The recipe's budget: the student's epochs, at most what fits in 1.8x its original's training seconds, are
    timed when it starts, written to run.json and result.json, and kept by a rerun (not timed again)."""
    data = noscope_data(tmp_path)
    common = [str(tmp_path / "runs"), "--datasets", TASK, "--epochs", "2", "--data_dir", str(data), "--device", "cpu",
              "--workers", "0", "--batch_size", "8"]
    train.main([*common, "--folds", "1"])
    original = tmp_path / "runs" / TASK / "fold1" / "multiplier1" / "none" / "result.json"
    result = json.loads(original.read_text())
    original.write_text(json.dumps({**result, "train_seconds": 1e-4}))  # an original as if trained in no time
    capsys.readouterr()
    train.main([*common, "--folds", "1", "2", "--recipe", "distill"])
    out = capsys.readouterr().out
    assert f"{TASK} fold 2: training 3 epochs at most (those that fit in 1.8x its original's seconds" in out
    assert f"{TASK} fold 2: trains 1 epochs: 0 fit in 1.8x the original's 0.0 s here (" in out
    student = tmp_path / "runs" / TASK / "fold2" / "multiplier1.414" / "distill"
    spec = json.loads((student / "run.json").read_text())
    assert spec["epochs"] == 1 and spec["seconds_bound"] == 1.8
    assert "3 = 1.2x the original's 2 epochs" in spec["epochs_choice"]
    assert ": 0 fit in 1.8x the original's 0.0 s here" in spec["epochs_choice"]
    assert json.loads((student / "result.json").read_text())["epochs"] == 1
    train.main([*common, "--folds", "1", "2", "--recipe", "distill"])
    assert capsys.readouterr().out.count("finished earlier, skipping") == 2
    resumed = sweep.build_spec(TASK, 2, recipe="distill", epochs=3, seconds_bound=1.8)
    state = {"run": spec}
    assert trainer.resumed_spec(resumed, state).epochs == 1
    assert trainer.resumed_spec(dataclasses.replace(resumed, seconds_bound=0.0), state).epochs == 3  # --student_epochs
