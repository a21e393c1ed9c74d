"""--init data: a folded student whose hidden layers start centred on its training images (models.init)."""
import json

import torch
from torch import nn

from config.tasks import get_task
from helpers import train_args, trainer_args, write_image_folder
from models import build_classifier
from models.fold import fold_input
from models.init import centre_on_data

TASK = "noscope-coral"


def layer_outputs(net, inputs):
    """{layer: its output over `inputs`, one row per channel} for every conv and linear layer of `net`."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, out: seen.__setitem__(m, out.detach().clone()))
             for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(inputs)
    for hook in hooks:
        hook.remove()
    return {m: out.transpose(0, 1).reshape(out.shape[1], -1) for m, out in seen.items()}


def static_camera(count, shape):
    """Frames of one fixed background with a small bright patch in a random place: what the NoScope stand-ins are."""
    background = torch.rand(shape)
    frames = background.repeat(count, 1, 1, 1)
    for frame in frames:
        y, x = torch.randint(shape[1] - 8, (2,)).tolist()
        frame[:, y:y + 8, x:x + 8] = 1.0
    return frames


def test_every_hidden_layer_starts_with_mean_0_and_std_1_over_the_images():
    torch.manual_seed(0)
    task = get_task("noscope-roundabout")
    net = build_classifier(task, 4).net.eval()
    inputs = fold_input(static_camera(64, task.input_shape), 4)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = {k: v.clone() for k, v in layers[-1].state_dict().items()}
    before = layer_outputs(net, inputs)
    assert min((out > 0).float().mean(1).min().item() for m, out in before.items() if m is not layers[-1]) == 0.0
    assert centre_on_data(net, inputs) == len(layers) - 1
    after = layer_outputs(net, inputs)
    for layer in layers[:-1]:
        assert torch.allclose(after[layer].mean(1), torch.zeros(1), atol=1e-3), layer
        assert torch.allclose(after[layer].std(1), torch.ones(1), atol=1e-3), layer
    assert all(torch.equal(last[k], v) for k, v in layers[-1].state_dict().items())  # the logits layer as it was


def test_layers_without_a_bias_are_left_alone():
    torch.manual_seed(0)
    net = build_classifier(get_task("cifar10"), 2).net.eval()  # its convs have no bias: BatchNorm follows each
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert centre_on_data(net, torch.rand(8, 6, 32, 32)) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_the_trainer_starts_a_student_centred_on_its_training_images(tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 8, 8))
    train_args(trainer_args(tmp_path / "f1", TASK, 1, 1, data_dir=data))
    common = dict(data_dir=data, recipe="distill", teacher=tmp_path / "f1" / "best.pth", batch_size=8)
    result = train_args(trainer_args(tmp_path / "f4", TASK, 4, 1, init="data", **common))
    out = capsys.readouterr().out
    assert "the student's 3 hidden layers start centred on 48 training images (--init data)" in out
    assert json.loads((tmp_path / "f4" / "run.json").read_text())["init"] == "data"
    assert len(result["test_slot_top1"]) == 4
