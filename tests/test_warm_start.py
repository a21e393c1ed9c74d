"""--init teacher: a folded student whose every slot starts as a copy of the trained original."""
import json
import sys

import pytest
import torch

from config.tasks import get_task
from helpers import run_cli, train_args, trainer_args, write_image_folder
from models import build_classifier
from models.warm_start import start_from_teacher

TASK = "noscope-coral"


@pytest.mark.parametrize("name", ["noscope-roundabout", "sot/timer3"])
@pytest.mark.parametrize("fold", [2, 3, 4])
def test_every_slot_starts_as_the_original_on_the_mean_of_its_copys_images(name, fold):
    torch.manual_seed(fold)
    task = get_task(name)
    teacher, student = build_classifier(task, 1).eval(), build_classifier(task, fold).eval()
    fresh = {k: v.clone() for k, v in student.state_dict().items()}
    copies = start_from_teacher(student.net, teacher.net, fold, task.input_shape)
    assert copies == (2 if fold == 4 else 1)  # int(sqrt(f)) copies fit side by side
    images = torch.rand(2 * fold, *task.input_shape)
    with torch.no_grad():
        got = student(images)
        for i in range(2 * fold):
            group, slot = divmod(i, fold)
            same_copy = [group * fold + j for j in range(fold) if j % copies == slot % copies]
            wanted = teacher(images[same_copy].mean(0, keepdim=True))[0]
            assert torch.allclose(got[i], wanted, atol=1e-5 * wanted.abs().max().item()), (i, got[i], wanted)
    if fold < 4:  # the channels beyond the copy keep their fresh weights, so they can learn
        first = next(k for k, v in fresh.items() if v.dim() == 4)
        width = teacher.state_dict()[first].shape[0]
        assert torch.equal(student.state_dict()[first][width:], fresh[first][width:])


def test_a_student_whose_layers_do_not_line_up_is_refused_unchanged():
    task = get_task("cifar10")  # its folded ResNet-18 pools without the original's padding (docs/protocol.md)
    teacher, student = build_classifier(task, 1), build_classifier(task, 4)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(ValueError, match="does not reproduce the original"):
        start_from_teacher(student.net, teacher.net, 4, task.input_shape)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_the_trainer_starts_a_student_from_its_teacher(tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 8, 8))
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data))
    teacher = tmp_path / "f1" / "best.pth"
    common = dict(data_dir=data, recipe="distill", teacher=teacher, batch_size=8)
    result = train_args(trainer_args(tmp_path / "f4", TASK, 4, 1, init="teacher", **common))
    assert "the student starts from its teacher, 2 copies of it read by its 4 slots" in capsys.readouterr().out
    assert json.loads((tmp_path / "f4" / "run.json").read_text())["init"] == "teacher"
    assert len(result["test_slot_top1"]) == 4
    resumed = run_cli(sys.executable, "fold_trainer.py", "--dataset", TASK, "--fold", "4", "--savedir",
                      tmp_path / "f4", "--continue_from_file", tmp_path / "f4" / "current.pth", "--epochs", "2",
                      "--recipe", "distill", "--teacher", teacher, "--data_dir", data, "--batch_size", "8",
                      "--device", "cpu")
    assert resumed.returncode == 2 and "trained with init teacher" in resumed.stderr
    assert "pass --init teacher to continue it" in resumed.stderr


def test_init_teacher_needs_a_distilled_student(tmp_path):
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "sot/timer3", "--fold", "4", "--savedir",
                   tmp_path / "run", "--init", "teacher", "--dry_run")
    assert done.returncode == 2 and "use it with --recipe distill" in done.stderr.strip().splitlines()[-1]
    plan = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "1", "4",
                   "--recipe", "distill", "--init", "teacher", "--dry_run")
    plans = {p["fold"]: p for p in map(json.loads, plan.stdout.splitlines())}
    assert plans[4]["init"] == "teacher" and plans[1]["init"] is None  # the original is the teacher
