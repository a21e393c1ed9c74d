"""--init teacher: a folded student whose every slot starts as a copy of the trained original; --init separate: one
whose slots start apart, each a fresh narrow copy of the original."""
import json
import sys

import pytest
import torch

from config.tasks import get_task, user_task
from helpers import run_cli, train_args, trainer_args, write_image_folder
from models import build_classifier, narrow_classifier
from models.fold_cnn import fold_cnn
from models.user import fold_user_model
from util.train import trainer
from util.train.spec import build_spec
from models.warm_start import start_from_teacher, start_slots_apart

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


def slot_logits_move_alone(student, images, fold):
    """Whether changing one image of a folded group changes that slot's logits and no other slot's."""
    with torch.no_grad():
        before = student(images)
        for j in range(fold):
            moved = images.clone()
            moved[j] = torch.rand_like(moved[j])
            after = student(moved)
            changed = [not torch.allclose(after[i], before[i], atol=1e-6) for i in range(fold)]
            if changed != [i == j for i in range(fold)]:
                return False
    return True


@pytest.mark.parametrize("fold", [2, 3, 4])
def test_separate_slots_start_as_fresh_narrow_copies_that_see_only_their_own_image(fold):
    torch.manual_seed(fold)
    task = get_task("sot/timer3")
    student = build_classifier(task, fold).eval()
    narrow = build_classifier(task, 1, fold ** 0.5 / fold).eval()  # width m / f of the original's
    assert not slot_logits_move_alone(student, torch.rand(fold, *task.input_shape), fold)  # fresh: slots mixed
    assert start_slots_apart(student.net, narrow.net, fold, task.input_shape) == fold
    images = torch.rand(fold, *task.input_shape)
    assert slot_logits_move_alone(student, images, fold)
    with torch.no_grad():
        assert torch.allclose(student(images), narrow(images), atol=1e-5)


def users_cnn(width):
    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 5))


def first_conv(classifier):
    return next(m for m in classifier.modules() if isinstance(m, torch.nn.Conv2d))


def test_a_users_cnn_with_batchnorm_starts_apart_and_a_layer_too_narrow_to_split_is_refused():
    torch.manual_seed(0)
    student, narrow = fold_user_model(users_cnn(16), (3, 12, 12), 4), fold_cnn(users_cnn(16), 1, 0.5, torch.rand(2, 3, 12, 12))
    assert first_conv(narrow).out_channels == 8 and first_conv(student).out_channels == 32
    start_slots_apart(student.net, narrow.net, 4, (3, 12, 12))
    assert slot_logits_move_alone(student.eval(), torch.rand(4, 3, 12, 12), 4)
    thin, thin_narrow = fold_user_model(users_cnn(1), (3, 12, 12), 4), fold_cnn(users_cnn(1), 1, 0.5, torch.rand(2, 3, 12, 12))
    before = {k: v.clone() for k, v in thin.state_dict().items()}  # 1 channel: 2 at f=4, no room for 4 copies
    with pytest.raises(ValueError, match="only 2 copies of the narrow model fit in the folded layers"):
        start_slots_apart(thin.net, thin_narrow.net, 4, (3, 12, 12))
    assert all(torch.equal(before[k], v) for k, v in thin.state_dict().items())


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


def test_the_narrow_original_of_a_users_cnn_is_rebuilt_while_its_f1_stays_as_given():
    task = user_task("mine", "docs/examples/real_models.py:photos", None, (3, 32, 32), list("abcdefghij"))
    narrow, original = narrow_classifier(task, 0.5), build_classifier(task, 1, 0.5)
    assert first_conv(narrow).out_channels * 2 == first_conv(original).out_channels
    student = build_classifier(task, 4)
    assert start_slots_apart(student.net, narrow.net, 4, task.input_shape) == 4


def test_the_trainer_starts_a_student_with_its_slots_apart_or_says_it_starts_fresh(tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 8, 8))
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data))
    result = train_args(trainer_args(tmp_path / "f4", TASK, 4, 1, init="separate", data_dir=data, recipe="distill",
                                     teacher=tmp_path / "f1" / "best.pth", batch_size=8))
    assert "the student's 4 slots start apart, each a fresh copy of the original at 1/4" in capsys.readouterr().out
    assert json.loads((tmp_path / "f4" / "run.json").read_text())["init"] == "separate"
    assert len(result["test_slot_top1"]) == 4
    resnet = build_classifier(get_task("cifar10"), 4)  # its narrow original pools with padding: no copy lines up
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    trainer.start_apart(resnet, build_spec("cifar10", 4, tmp_path / "c", recipe="distill", overrides={
        "init": "separate"}))
    assert "--init separate does not fit this model (" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_init_teacher_needs_a_distilled_student(tmp_path):
    done = run_cli(sys.executable, "fold_trainer.py", "--dataset", "sot/timer3", "--fold", "4", "--savedir",
                   tmp_path / "run", "--init", "teacher", "--dry_run")
    assert done.returncode == 2 and "use it with --recipe distill" in done.stderr.strip().splitlines()[-1]
    plan = run_cli(sys.executable, "train.py", tmp_path / "runs", "--datasets", "sot/timer3", "--folds", "1", "4",
                   "--recipe", "distill", "--init", "teacher", "--dry_run")
    plans = {p["fold"]: p for p in map(json.loads, plan.stdout.splitlines())}
    assert plans[4]["init"] == "teacher" and plans[1]["init"] is None  # the original is the teacher
