"""Your own CNN on your own images: train.py / fold_trainer.py --model_file FILE.py:FUNCTION --data DIR, and every
tool downstream of the runs (choose_fold, export, classify, resume, torchrun), and the bad inputs of that path."""
import json
import shutil
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from helpers import REPO, run_cli, write_image_folder
from util.train import trainer
from util.train.checkpoint import load_classifier

CLASSES = ("ant", "bee", "cat")
MODEL = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3))


def neighbour():
    from my_layers import head  # a file beside this one, imported as when the file runs itself
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head())


def fixed():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 14, 3))


def wider():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 3))


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.gain


def unfoldable():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Scale(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def layer_norm():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LayerNorm([4, 10, 16]), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def not_a_model():
    return "a string"
""".replace("from torch import nn", "import torch\nfrom torch import nn")
TRAIN = (sys.executable, "train.py")
FOLD_TRAINER = (sys.executable, "fold_trainer.py")


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """(folder, model spec, data folder): a model file and an ImageFolder of 3 classes of 10x16 RGB images."""
    root = tmp_path_factory.mktemp("own")
    (root / "my_models.py").write_text(MODEL)
    (root / "my_layers.py").write_text("from torch import nn\n\n\ndef head():\n    return nn.Linear(8, 3)\n")
    write_image_folder(root / "shapes", CLASSES, (10, 16), per_split=(16, 4, 4))
    return root, f"{root / 'my_models.py'}:build", root / "shapes"


@pytest.fixture(scope="module")
def trained(own):
    """A sweep of f = 1 and 2 (the default recipe: distill) on the user's data, 2 epochs."""
    root, spec, data = own
    runs = root / "runs"
    before = repository_files()
    result = run_cli(*TRAIN, runs, "--model_file", spec, "--data", data, "--folds", "1", "2", "--epochs", "2",
                     "--batch_size", "8")
    assert result.returncode == 0, result.stderr
    result.repository_before = before
    return runs, result


def repository_files():
    """{path: (bytes, mtime)} of what a run of a registry task could touch: config/ and model_files/."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for folder in ("config", "model_files")
            for p in sorted((REPO / folder).rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def run_folder(runs, fold):
    leaf = "none" if fold == 1 else "distill"
    return runs / "shapes" / f"fold{fold}" / f"multiplier{fold ** 0.5:.4g}" / leaf


def test_sweep_trains_the_users_model_and_its_folded_student(own, trained):
    root, spec, data = own
    runs, result = trained
    assert "data " + str(data) in result.stdout and "3 classes (ant, bee, cat)" in result.stdout
    assert "RGB 10x16" in result.stdout
    summary = (runs / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("dataset,fold,mode,recipe,epochs") and len(summary) == 3
    assert summary[1].startswith("shapes,1,original,paper,2,") and summary[2].startswith("shapes,2,folded,distill,")
    epochs = int(summary[2].split(",")[4])  # 3x the original's, or fewer where they take over 1.8x its seconds here
    folded = json.loads((run_folder(runs, 2) / "result.json").read_text())
    assert len(folded["test_slot_top1"]) == 2 and folded["worst_slot_test_top1"] == min(folded["test_slot_top1"])
    assert folded["model_file"] == spec and folded["class_names"] == list(CLASSES) and folded["input_shape"] == [3, 10, 16]
    spec_json = json.loads((run_folder(runs, 2) / "run.json").read_text())
    assert spec_json["recipe"] == "distill" and spec_json["teacher"] == str(run_folder(runs, 1) / "best.pth")
    assert spec_json["data"] == str(data) and spec_json["epochs"] == epochs and 1 <= epochs <= 6
    assert spec_json["epochs_choice"].startswith("the distill recipe's student budget: 6 = 3x the original's 2 epochs")
    assert "fit in 1.8x the original's" in spec_json["epochs_choice"] and spec_json["seconds_bound"] == 1.8
    assert "teacher " in result.stdout and "rebuilding its model by running" in result.stderr


def test_the_checkpoint_records_how_to_rebuild_the_model(own, trained, capsys):
    _, spec, _ = own
    runs, _ = trained
    state = torch.load(run_folder(runs, 2) / "best.pth", weights_only=True)
    assert state["model_args"] == {"task": "shapes", "fold": 2, "multiplier": 2 ** 0.5, "mode": "folded", "align": 1,
                                   "model_file": spec, "input_shape": [3, 10, 16], "class_names": list(CLASSES),
                                   "data": str(own[2])}
    classifier, _ = load_classifier(run_folder(runs, 2))
    assert f"rebuilding its model by running {spec}" in capsys.readouterr().err
    assert classifier(torch.rand(4, 3, 10, 16)).shape == (4, 3)


def test_dry_run_says_what_was_chosen_and_writes_nothing(own, tmp_path):
    _, spec, data = own
    result = run_cli(*TRAIN, tmp_path / "runs", "--model_file", spec, "--data", data, "--folds", "1", "4", "--dry_run")
    assert result.returncode == 0, result.stderr
    specs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(s["fold"], s["recipe"], s["epochs"], s["loss"].split()[0]) for s in specs] == [
        (1, "paper", 30, "cross-entropy"), (4, "distill", 90, "mean")]  # the students: 3x the original's epochs
    assert specs[1]["model_file"] == spec and specs[1]["class_names"] == list(CLASSES)
    assert not (tmp_path / "runs").exists()


def test_weights_stand_for_the_trained_original(own, trained, tmp_path):
    root, spec, data = own
    runs, _ = trained
    original = load_classifier(run_folder(runs, 1))[0].net
    torch.save(original.state_dict(), tmp_path / "original.pth")  # what a PyTorch user saves
    result = run_cli(*TRAIN, tmp_path / "runs", "--model_file", spec, "--data", data, "--folds", "1", "2",
                     "--epochs", "1", "--batch_size", "8", "--weights", tmp_path / "original.pth")
    assert result.returncode == 0, result.stderr
    given = json.loads((run_folder(tmp_path / "runs", 1) / "result.json").read_text())
    trained_f1 = json.loads((run_folder(runs, 1) / "result.json").read_text())
    assert given["epochs"] == 0 and given["test_top1"] == trained_f1["test_top1"]
    assert "evaluated, not trained" in result.stdout
    student = json.loads((run_folder(tmp_path / "runs", 2) / "run.json").read_text())
    assert student["teacher"] == str(tmp_path / "original.pth")


def test_fold_trainer_trains_one_run_of_the_users_model(own, trained, tmp_path):
    _, spec, data = own
    runs, _ = trained
    result = run_cli(*FOLD_TRAINER, "--model_file", spec, "--data", data, "--fold", "3", "--epochs", "1",
                     "--batch_size", "6", "--savedir", tmp_path / "f3", "--teacher", run_folder(runs, 1) / "best.pth")
    assert result.returncode == 0, result.stderr
    result_json = json.loads(result.stdout.strip().splitlines()[-1])
    assert result_json["fold"] == 3 and result_json["recipe"] == "distill" and len(result_json["test_slot_top1"]) == 3


def test_resume_after_a_kill_continues_exactly(own, tmp_path, monkeypatch):
    _, spec, data = own
    flags = ("--model_file", spec, "--data", data, "--folds", "2", "--epochs", "3", "--batch_size", "8",
             "--teacher", "unused.pth", "--recipe", "paper")
    straight = run_cli(*TRAIN, tmp_path / "a", *flags)
    assert straight.returncode == 0, straight.stderr
    real_end_epoch, calls = trainer.end_epoch, []

    def killed_after_two(*args):
        calls.append(1)
        progress = real_end_epoch(*args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies after epoch 2's checkpoint
        return progress
    monkeypatch.setattr(trainer, "end_epoch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_cli(*TRAIN, tmp_path / "b", *flags)
    monkeypatch.setattr(trainer, "end_epoch", real_end_epoch)
    resumed = run_cli(*TRAIN, tmp_path / "b", *flags)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "epoch 3/3" in resumed.stdout and "epoch 2/3" not in resumed.stdout
    leaf = ("shapes", "fold2", "multiplier1.414", "fold")
    for name in ("test_top1.txt", "train_loss.txt"):
        assert (tmp_path.joinpath("a", *leaf, "stats", name).read_text()
                == tmp_path.joinpath("b", *leaf, "stats", name).read_text())


@pytest.mark.slow
def test_torchrun_trains_the_users_model(own, tmp_path):
    _, spec, data = own
    result = run_cli(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     "train.py", tmp_path / "runs", "--model_file", spec, "--data", data, "--folds", "1", "2",
                     "--epochs", "1", "--batch_size", "8", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "runs" / "summary.csv").read_text().splitlines()) == 3
    assert result.stdout.count("data " + str(data)) == 1  # rank 0 alone says what it found


def test_downstream_tools_take_the_runs(own, trained, tmp_path):
    _, spec, data = own
    runs, _ = trained
    csv = tmp_path / "results.csv"
    measured = run_cli("./run_inference.sh", csv, "--from_run", run_folder(runs, 1), "--folds",  # its file and shape
                       "1", "2", "--quick", "--no_peak", "--backend", "eager")
    assert measured.returncode == 0, measured.stderr
    chosen = run_cli(sys.executable, "util/choose_fold.py", runs, csv, "--out", tmp_path / "choice")
    assert chosen.returncode == 0, chosen.stderr
    assert "## shapes: deploy f=" in chosen.stdout
    rows = (tmp_path / "choice.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in rows[1:]] == [["shapes", "shapes", "1"], ["shapes", "shapes", "2"]]
    assert all(r.split(",")[6] for r in rows[1:])  # images/sec from the CSV for both folds

    exported = run_cli(sys.executable, "util/export.py", run_folder(runs, 2), tmp_path / "m.onnx", "--images")
    assert exported.returncode == 0, exported.stderr
    assert "input x: N x 3 x 10 x 16 (N a multiple of 2), output logits: N x 3" in exported.stdout
    classifier, _ = load_classifier(run_folder(runs, 2))
    images = torch.rand(6, 3, 10, 16)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.allclose(session.run(None, {"x": images.numpy()})[0], classifier(images).numpy(), atol=1e-4)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["class_names"]) == list(CLASSES) and metadata["fold"] == "2"

    out = tmp_path / "pred.csv"
    folder = tmp_path / "to_classify"
    shutil.copytree(data / "test", folder)
    (folder / "notes.txt").write_text("not an image")
    Image.new("RGB", (20, 30)).save(folder / "ant" / "big.png")  # another size: resized as training resizes
    classified = run_cli(sys.executable, "util/classify_video.py", folder, run_folder(runs, 2), "--out", out)
    assert classified.returncode == 0, classified.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "image,label,score" and len(lines) == 1 + 4 * len(CLASSES) + 1
    assert lines[1].startswith("ant/0.png,") and {line.split(",")[1] for line in lines[1:]} <= set(CLASSES)
    assert "person" not in classified.stdout and "classified 13 images" in classified.stdout
    assert "(trained on shapes)" in classified.stdout and "stand-in" not in classified.stdout
    assert "1 files that are not images skipped (first: notes.txt)" in classified.stdout
    assert "1 images of another size than 10x16 resized (bilinear) when read" in classified.stdout
    own_onnx = run_cli(sys.executable, "util/classify_video.py", folder, tmp_path / "m.onnx", "--out", out)
    assert own_onnx.returncode == 2 and "your own CNN, whose images are read as its model file says: classify with " \
        "its checkpoint" in own_onnx.stderr


def fails(*argv, fragments, written=()):
    """The command exits 2 with one `error: ...` line holding every fragment, and writes none of `written`."""
    result = run_cli(*argv)
    err = [line for line in result.stderr.strip().splitlines() if "rebuilding its model" not in line]
    assert result.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in err[0], err[0]
    for path in written:
        assert not path.exists()


def test_bad_input_is_one_line_and_writes_nothing(own, trained, tmp_path):
    root, spec, data = own
    model_file = root / "my_models.py"
    runs = tmp_path / "runs"

    def train(*flags, fragments, data=data, model=spec):
        fails(*TRAIN, runs, "--model_file", model, "--data", data, *flags, fragments=fragments, written=[runs])

    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    train(model=f"{broken}:build", fragments=[f"running {broken} failed: SyntaxError"])
    train(model=f"{model_file}:not_a_model", fragments=["not_a_model() returned str, not an nn.Module"])
    train(model=f"{model_file}:missing", fragments=["defines no function missing"])
    train(model=str(model_file), fragments=["give FILE.py:FUNCTION"])
    train("--folds", "1", "2", model=f"{model_file}:layer_norm", fragments=["cannot fold layer 1 (LayerNorm)"])
    train("--folds", "1", "2", model=f"{model_file}:unfoldable", fragments=["reads the tensor 1.gain directly"])
    train("--input_shape", "3", "8", "8", model=f"{model_file}:fixed",
          fragments=["the model rejects images of --input_shape 3 8 8", "pass the --input_shape C H W it takes"])
    train("--input_shape", "2", "10", "16", fragments=["C = 1 or 3"])

    shutil.copytree(data, tmp_path / "no_test")
    shutil.rmtree(tmp_path / "no_test" / "test")
    train(data=tmp_path / "no_test", fragments=["has no test/ folder", "train/, val/ and test/"])
    shutil.copytree(data, tmp_path / "extra_class")
    (tmp_path / "extra_class" / "val" / "dog").mkdir()
    Image.new("RGB", (16, 10)).save(tmp_path / "extra_class" / "val" / "dog" / "0.png")
    train(data=tmp_path / "extra_class", fragments=["class 'dog' is in val/ but not in train/"])
    shutil.copytree(data, tmp_path / "empty_class")
    for split in ("train", "val", "test"):
        (tmp_path / "empty_class" / split / "dog").mkdir()
    train(data=tmp_path / "empty_class", fragments=["class folder train/dog holds no images"])
    train(data=tmp_path / "nowhere", fragments=["--data", "no such folder"])
    shutil.copytree(data, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "val" / "ant" / "9.png").write_bytes(b"not a png")
    train(data=tmp_path / "corrupt", fragments=["cannot read image", "9.png", "replace or delete the file"])

    torch.save(torch.nn.Linear(2, 3).state_dict(), tmp_path / "other.pth")
    train("--weights", tmp_path / "other.pth", fragments=["--weights", "do not fit the model", "missing keys: 0.weight",
                                                          "unexpected keys: weight, bias"])
    fails(*TRAIN, runs, "--model_file", spec, fragments=["needs both --model_file", "--data DIR"], written=[runs])
    fails(*TRAIN, runs, "--datasets", "noscope-coral", "--weights", tmp_path / "other.pth",
          fragments=["--weights", "--model_file", "--data"], written=[runs])


def test_files_that_are_not_images_are_skipped_and_counted(own, tmp_path):
    _, spec, data = own
    shutil.copytree(data, tmp_path / "notes")
    (tmp_path / "notes" / "train" / "ant" / "README.txt").write_text("my notes")
    Image.new("L", (8, 5)).save(tmp_path / "notes" / "train" / "bee" / "small.png")  # another size and mode
    result = run_cli(*TRAIN, tmp_path / "runs", "--model_file", spec, "--data", tmp_path / "notes", "--dry_run")
    assert result.returncode == 0, result.stderr
    assert "1 files that are not images skipped (first: " in result.stdout and "README.txt" in result.stdout
    assert "1 images of other sizes are resized to 10x16 (bilinear)" in result.stdout


def test_a_moved_or_changed_model_file_is_a_one_line_error(own, trained, tmp_path):
    root, spec, _ = own
    runs, _ = trained
    moved = tmp_path / "ckpt.pth"
    state = torch.load(run_folder(runs, 2) / "best.pth", weights_only=True)
    gone = str(tmp_path / "gone.py") + ":build"
    torch.save({**state, "model_args": {**state["model_args"], "model_file": gone}}, moved)
    fails(sys.executable, "util/export.py", moved, tmp_path / "m.onnx",
          fragments=[f"was trained with the model of {gone}", "restore that file or retrain"],
          written=[tmp_path / "m.onnx"])
    changed = tmp_path / "changed.pth"
    torch.save({**state, "model_args": {**state["model_args"], "model_file": f"{root / 'my_models.py'}:wider"}},
               changed)
    fails(sys.executable, "util/export.py", changed, tmp_path / "m.onnx",
          fragments=["its weights do not fit the model", "my_models.py:wider builds now", "restore it or retrain"],
          written=[tmp_path / "m.onnx"])


def test_a_user_run_writes_nothing_in_the_repository(trained):
    _, result = trained
    assert repository_files() == result.repository_before


def test_a_savedir_never_passes_one_models_runs_off_as_anothers(own, trained, tmp_path):
    root, spec, data = own
    runs, _ = trained
    other = f"{root / 'my_models.py'}:wider"
    fails(*TRAIN, runs, "--model_file", other, "--data", data, "--folds", "1", "2", "--epochs", "2",
          fragments=[f"holds a run with model_file {spec}, not {other}", "another savedir (or under another --name)"])
    fails(*TRAIN, runs, "--model_file", other, "--data", data, "--folds", "1", "--epochs", "3",
          fragments=[f"holds a run with model_file {spec}, not {other}"])
    torch.save(load_classifier(run_folder(runs, 1))[0].net.state_dict(), tmp_path / "original.pth")
    fails(*TRAIN, runs, "--model_file", spec, "--data", data, "--folds", "1", "2", "--epochs", "2", "--weights",
          tmp_path / "original.pth", fragments=["holds a run with weights None, not " + str(tmp_path / "original.pth")])


def test_a_model_file_imports_its_neighbours(own, tmp_path):
    root, _, data = own
    result = run_cli(*TRAIN, tmp_path / "runs", "--model_file", f"{root / 'my_models.py'}:neighbour", "--data", data,
                     "--folds", "1", "2", "--dry_run")
    assert result.returncode == 0, result.stderr
    specs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(s["fold"], s["model_file"]) for s in specs] == [(f, f"{root / 'my_models.py'}:neighbour") for f in (1, 2)]


def test_checks_that_need_no_training_fail_before_anything_is_written(own, tmp_path):
    _, spec, data = own
    fails(*TRAIN, tmp_path / "runs", "--model_file", spec, "--data", data, "--folds", "1", "16",
          fragments=["val/ holds 12 images, fewer than the fold 16", "drop fold 16"], written=[tmp_path / "runs"])
    fails(*FOLD_TRAINER, "--model_file", spec, "--data", data, "--fold", "2", "--savedir", tmp_path / "f2",
          fragments=["pass --teacher (your f=1 run's best.pth, or --weights"], written=[tmp_path / "f2"])
    fails("./run_inference.sh", tmp_path / "r.csv", "--model_file", spec, "--input_shape", "3", "1", "1",
          fragments=["the model rejects images of --input_shape 3 1 1"], written=[tmp_path / "r.csv"])
    fails("./run_inference.sh", tmp_path / "r.csv", "--from_run", tmp_path / "none", "--input_shape", "3", "1", "1",
          fragments=["--from_run reads --model_file and --input_shape from the run: give one or the others"],
          written=[tmp_path / "r.csv"])


def test_a_wrong_input_shape_is_named_as_the_flag_when_folding(own):
    from models.user import user_classifier
    root, _, _ = own
    spec = f"{root / 'my_models.py'}:fixed"  # its Linear takes 10x16 images only
    assert user_classifier(spec, (3, 10, 16), fold=2)(torch.rand(4, 3, 10, 16)).shape == (4, 3)
    with pytest.raises(ValueError) as error:
        user_classifier(spec, (3, 12, 12), fold=2)
    assert "rejects images of --input_shape 3 12 12" in str(error.value) and "example_input" not in str(error.value)
