"""fold_cnn: any CNN classifier becomes its FoldedCNN, checked against the hand-written models of the registry."""
import json
import sys

import pytest
import torch
import torchvision
from torch import nn

from config.tasks import task_names
from models import build_model, fold_cnn
from models.flops import count_model_flops
from helpers import run_cli
from util.core.device import REPO
from models.user import load_model_file
from util.runtime.onnx import onnx_model
from util.deploy.onnx import onnx_difference


def leaf_layers(model):
    """(name, kind) of every leaf module that does something (an empty Sequential is an identity shortcut)."""
    return [(name, type(m).__name__) for name, m in model.named_modules()
            if not any(True for _ in m.children()) and not isinstance(m, nn.Sequential)]


@pytest.mark.parametrize("task", task_names())
@pytest.mark.parametrize("fold", [2, 3, 4])
def test_folding_a_registry_model_gives_the_hand_written_folded_cnn(task, fold):
    original, shape = build_model(task, 1)
    expected, folded_shape = build_model(task, fold)
    folded = fold_cnn(original, fold, example_input=torch.rand(2, *shape))
    assert [(n, p.shape) for n, p in folded.net.named_parameters()] == \
        [(n, p.shape) for n, p in expected.named_parameters()]
    assert leaf_layers(folded.net) == leaf_layers(expected)
    assert count_model_flops(folded.net, folded_shape) == count_model_flops(expected, folded_shape)
    assert folded(torch.rand(2 * fold, *shape)).shape == (2 * fold, original(torch.rand(1, *shape)).shape[1])
    if task.startswith("cifar"):  # the one layer whose kind the paper changes: fold_cnn keeps the original's
        assert (original.pool.padding, folded.net.pool.padding, expected.pool.padding) == (1, 1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("build", [torchvision.models.resnet18, torchvision.models.mobilenet_v3_small])
def test_torchvision_models_fold_train_and_export(build):
    torch.manual_seed(0)
    original = build(num_classes=5)
    folded = fold_cnn(original, 4, example_input=torch.rand(2, 3, 64, 64))
    assert next(m for m in folded.modules() if isinstance(m, nn.Conv2d)).in_channels == 12
    x = torch.rand(8, 3, 64, 64)
    logits = folded(x)
    assert logits.shape == (8, 5)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in folded.parameters())
    depthwise = [m for m in folded.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)  # depthwise stays depthwise
    assert len(depthwise) == sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in original.modules())
    folded.eval()
    onnx_bytes = onnx_model(folded, torch.rand(8, 3, 64, 64), batch_multiple=4)
    error, scale = onnx_difference(onnx_bytes, folded, torch.rand(12, 3, 64, 64))
    assert error <= 1e-4 * max(1.0, scale)


class UserCNN(nn.Module):
    """A user's own CNN: a depthwise conv, a concatenation, a residual addition and a global pool."""

    def __init__(self, classes=7):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(32, 16, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 24),
                                  nn.ReLU(), nn.Linear(24, classes))

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([x, torch.relu(self.depthwise(x))], dim=1)
        return self.head(x + self.pointwise(y))


def test_a_users_cnn_folds_with_its_widths_inherited():
    folded = fold_cnn(UserCNN(), 4, example_input=torch.rand(2, 1, 20, 20))
    layer = folded.net.get_submodule
    assert (layer("stem.0").in_channels, layer("stem.0").out_channels, layer("stem.1").num_features) == (4, 32, 32)
    assert (layer("depthwise").in_channels, layer("depthwise").groups, layer("depthwise").out_channels) == (32, 32, 32)
    assert layer("pointwise").in_channels == 64  # the concatenation of two 32-channel tensors
    assert (layer("head.3").in_features, layer("head.3").out_features) == (32, 48)  # the Linear after the flatten
    assert (layer("head.5").in_features, layer("head.5").out_features) == (48, 28)  # the logits: f*K
    assert folded(torch.rand(12, 1, 20, 20)).shape == (12, 7)
    assert folded.training  # as the model it came from
    three = fold_cnn(UserCNN(), 3, multiplier=1.0, example_input=torch.rand(2, 1, 20, 20))
    assert three.net.get_submodule("stem.0").out_channels == 16 and three.net.get_submodule("head.5").out_features == 21


class BatchCentering(UserCNN):
    def forward(self, x):
        x = self.stem(x)
        return self.head(x - x.mean(0, keepdim=True))


class LayerNormed(UserCNN):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm([16, 20, 20])

    def forward(self, x):
        return self.head(self.norm(self.stem(x)))


class FixedView(UserCNN):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16 * 20 * 20, 7)

    def forward(self, x):
        return self.fc(self.stem(x).view(-1, 16 * 20 * 20))


class DataDependent(UserCNN):
    def forward(self, x):
        return self.head(self.stem(x)) if x.sum() > 0 else self.head(-self.stem(x))


@pytest.mark.parametrize("model, message", [
    (BatchCentering(), r"layer .*mean.* mixes the images of a batch"),
    (LayerNormed(), r"cannot fold layer norm \(LayerNorm\): it has weights, and fold_cnn rebuilds only"),
    (FixedView(), r"cannot fold the model at view .*a size fixed in the model that folding changes"),
    (DataDependent(), r"cannot trace DataDependent with torch.fx .*without data-dependent control flow"),
])
def test_a_model_that_cannot_be_folded_is_refused_naming_the_layer(model, message):
    with pytest.raises(ValueError, match=message):
        fold_cnn(model, 2, example_input=torch.rand(2, 1, 20, 20))


def test_the_example_input_is_checked():
    with pytest.raises(ValueError, match=r"example_input must be a batch of at least 2 images"):
        fold_cnn(UserCNN(), 2, example_input=torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match=r"the model fails on the example input of shape \(2, 3, 20, 20\)"):
        fold_cnn(UserCNN(), 2, example_input=torch.rand(2, 3, 20, 20))
    assert fold_cnn(UserCNN(), 2)(torch.rand(4, 1, 64, 64)).shape == (4, 7)  # default: 64x64 images


USER_MODEL_FILE = '''
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 5))
'''


@pytest.mark.slow
def test_infer_and_the_sweep_measure_a_users_model_and_its_folded_cnns(tmp_path):
    (tmp_path / "mine.py").write_text(USER_MODEL_FILE)
    spec = f"{tmp_path / 'mine.py'}:build"
    done = run_cli(sys.executable, "infer.py", "--model_file", spec, "--input_shape", "3", "16", "16", "--fold", "2",
                   "--batch_size", "32", "--min_time", "0", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["model"], row["mode"], row["fold"], row["images_per_sec"] > 0) == ("mine.build", "folded", 2, True)
    assert row["flops_per_sec"] / row["images_per_sec"] == pytest.approx(
        count_model_flops(fold_cnn(load_model_file(spec), 2, example_input=torch.rand(2, 3, 16, 16)).net,
                          (6, 16, 16)) / 2, rel=1e-6)
    csv = tmp_path / "mine.csv"
    sweep = run_cli("./run_inference.sh", csv, "--model_file", spec, "--input_shape", "3", "16", "16", "--quick",
                    "--no_peak", "--batch_sizes", "32", "--device", "cpu")
    assert sweep.returncode == 0, sweep.stderr
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    assert [(r[0], r[2], r[4]) for r in rows] == [("mine.build", "1", "Original"), ("mine.build", "4", "Folded")]
    report = run_cli(sys.executable, "util/inference_report.py", csv)
    assert report.returncode == 0 and (tmp_path / "mine-report" / "speedup.png").exists(), report.stderr


@pytest.mark.parametrize("argv, message", [
    (["--model_file", "nofile.py:build", "--input_shape", "3", "8", "8"], "no file nofile.py"),
    (["--model_file", "{dir}/mine.py:other", "--input_shape", "3", "8", "8"], "defines no function other"),
    (["--model_file", "{dir}/mine.py:build"], "needs --input_shape C H W"),
    (["noscope-coral", "--model_file", "{dir}/mine.py:build"], "name a TASK or a --model_file, not both"),
    (["--model_file", "{dir}/mine.py:build", "--input_shape", "3", "9", "9", "--fold", "4"],
     "the model rejects images of --input_shape 3 9 9"),
])
def test_a_bad_model_file_is_one_line_error(tmp_path, argv, message):
    (tmp_path / "mine.py").write_text(USER_MODEL_FILE)
    done = run_cli(sys.executable, "infer.py", *[a.format(dir=tmp_path) for a in argv], "--device", "cpu")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_the_readme_example_runs_as_written():
    text = (REPO / "README.md").read_text()
    block = text.split("**Fold your own CNN.**")[1].split("```python\n")[1].split("```")[0]
    scope = {}
    exec(block, scope)  # the README's own lines
    assert scope["logits"].shape == (8, 10)
