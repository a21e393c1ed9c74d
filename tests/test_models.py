"""The model zoo: shapes, parameter counts, routing of images through fold/unfold, bad input."""
import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from config.tasks import get_task, task_names
from models import FoldedClassifier, build_classifier, build_model, fold_input, unfold_output

FOLDS = (1, 2, 3, 4)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("fold", FOLDS)
@pytest.mark.parametrize("task", task_names())
def test_wrapper_gives_one_row_of_logits_per_image(task, fold):
    t = get_task(task)
    model = build_classifier(task, fold).eval()
    images = torch.randn(2 * fold, *t.input_shape)
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (2 * fold, t.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("fold", FOLDS)
@pytest.mark.parametrize("task", task_names())
def test_builder_input_shape_and_output_width(task, fold):
    t = get_task(task)
    model, shape = build_model(task, fold)
    assert shape == (3 * fold, *t.input_shape[1:])
    assert model.eval()(torch.randn(3, *shape)).shape == (3, fold * t.num_classes)


def noscope_params(filters, layers, dense, k, hw=50):
    """Parameter count of the original NoScope CNN, by hand from docs/protocol.md, section 2."""
    conv = lambda cin, cout: 9 * cin * cout + cout
    total, width, pools = conv(3, filters) + conv(filters, filters), filters, 1
    if layers > 2:
        total += conv(filters, 2 * filters) + conv(2 * filters, 2 * filters)
        width, pools = 2 * filters, 2
    flat = width * (hw >> pools) ** 2
    return total + flat * dense + dense + dense * k + k


def game_params(h, w, units, c1, ci, cn, k):
    """Parameter count of the original game CNN, by hand from docs/protocol.md, section 2 (pools without padding)."""
    conv = lambda cin, cout: 9 * cin * cout + cout
    pool = lambda s, stride: (s - 3) // stride + 1
    total = conv(3, c1)
    h, w, cin = pool(h, 2), pool(w, 2), c1
    for _ in range(units):
        total += conv(cin, ci) + 2 * conv(ci, ci)
        h, w, cin = pool(h, 1), pool(w, 1), ci
    total += conv(cin, cn)
    h, w = pool(h, 2), pool(w, 2)
    return total + cn * h * w * k + k


def reference_param_count(task):
    t, a = get_task(task), get_task(task).architecture
    if t.family == "noscope":
        return noscope_params(a["filters"], a["layers"], a["dense"], t.num_classes)
    if t.family == "game":
        return game_params(*t.input_shape[1:], a["conv_units"], a["first_channels"], a["unit_channels"],
                           a["last_channels"], t.num_classes)
    net = resnet18(num_classes=t.num_classes)  # torchvision's, with the CIFAR 3x3 stem
    net.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    return n_params(net)


@pytest.mark.parametrize("task", task_names())
def test_fold_1_is_exactly_the_original(task):
    folded, _ = build_model(task, 1, "folded")
    original, _ = build_model(task, 1, "original")
    assert n_params(folded) == n_params(original) == reference_param_count(task)


def test_non_square_fold_truncates_each_width():
    model, _ = build_model("noscope-coral", 3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs[0].in_channels == 9 and convs[0].out_channels == int(16 * math.sqrt(3)) == 27
    assert linears[0].out_features == int(128 * math.sqrt(3)) == 221
    assert linears[-1].out_features == 2 * 3


def test_explicit_multiplier_overrides_sqrt_f():
    model, _ = build_model("sot/timer3", 2, multiplier=1.0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 6 and {c.out_channels for c in convs} == {32, 8}


def test_fold_and_unfold_are_image_major_reshapes():
    x = torch.arange(6 * 2 * 1 * 1).float().reshape(6, 2, 1, 1)
    folded = fold_input(x, 3)
    assert folded.shape == (2, 6, 1, 1)
    assert torch.equal(folded[1, 2:4], x[4])  # group 1, slot 1 holds image 1*3+1
    logits = torch.arange(2 * 3 * 4).reshape(2, 12)
    assert torch.equal(unfold_output(logits, 3)[4], logits[1, 4:8])


def block_diagonal_copy(original, folded, fold):
    """Make `folded` (built with multiplier f) compute `original` on each of its f images separately."""
    pairs = list(zip(original.modules(), folded.modules()))
    assert len(pairs) == len(list(folded.modules()))
    with torch.no_grad():
        for small, big in pairs:
            if isinstance(small, (nn.Conv2d, nn.Linear)):
                big.weight.zero_()
                out, inp = small.weight.shape[:2]
                for i in range(fold):
                    big.weight[i * out:(i + 1) * out, i * inp:(i + 1) * inp] = small.weight
                if small.bias is not None:
                    big.bias.copy_(small.bias.repeat(fold))
            elif isinstance(small, nn.BatchNorm2d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(big, name).copy_(getattr(small, name).repeat(fold))


@pytest.mark.parametrize("fold", (2, 3, 4))
@pytest.mark.parametrize("task", ["noscope-roundabout", "sot/timer3", "cifar10"])
def test_each_image_logits_land_in_its_own_row(task, fold):
    torch.manual_seed(fold)
    original, _ = build_model(task, 1, "original")
    with torch.no_grad():  # convs keep the paper's init; the rest is randomised so rows differ clearly
        for m in original.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.1)
                nn.init.normal_(m.bias, std=0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(std=0.1)
                m.running_mean.normal_(std=0.1), m.running_var.uniform_(0.5, 2)
    folded, _ = build_model(task, fold, "folded", multiplier=fold)
    if hasattr(original, "pool"):  # the ResNet: the original pools with padding, folded models without (2.3)
        assert (original.pool.padding, folded.pool.padding) == (1, 0)
        original.pool = folded.pool
    block_diagonal_copy(original, folded, fold)
    original.eval(), folded.eval()
    images = torch.randn(3 * fold, *get_task(task).input_shape)
    with torch.no_grad():
        expected = original(images)
        got = FoldedClassifier(folded, fold)(images)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (expected[:-1] - expected[1:]).abs().amax(dim=1).min() > 1e-2  # rows differ: a mix-up would show


@pytest.mark.parametrize("task", ["noscope-coral", "lol/goldnumber-fraction", "cifar100"])
def test_channels_last_inputs_give_the_same_logits(task):
    model = build_classifier(task, 4).eval()
    images = torch.randn(8, *get_task(task).input_shape)
    with torch.no_grad():
        expected = model(images)
        got = model.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_compound_scaled_baseline_shape():
    model, shape = build_model("lol/goldnumber-fraction", 2, "efficientnet")
    assert shape == (3, int(22 / 1.15), int(52 / 1.15)) == (3, 19, 45)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == int(5 / 1.1) == 4  # the final conv block is dropped
    assert [c.out_channels for c in convs] == [29, 29, 29, 29]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert model(torch.randn(2, *shape)).shape == (2, 11)
    two_units, _ = build_model("sot/timer3", 2, "efficientnet")
    assert sum(isinstance(m, nn.Conv2d) for m in two_units.modules()) == int(8 / 1.1) == 7
    original, shape1 = build_model("sot/timer3", 1, "efficientnet")
    assert shape1 == (3, 22, 30) and n_params(original) == n_params(build_model("sot/timer3", 1, "original")[0])


def test_weight_init_follows_the_paper():
    model, _ = build_model("noscope-taipei", 1)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    bound = math.sqrt(2) * math.sqrt(6 / ((3 + 64) * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert abs(linear.weight.std().item() - 0.01) < 0.001
    assert conv.bias.abs().sum() == 0 and linear.bias.abs().sum() == 0


@pytest.mark.parametrize("fold", [0, -1, 2.5, "2", True, None])
def test_invalid_fold_is_a_clear_value_error(fold):
    with pytest.raises(ValueError, match=r"fold must be a positive integer .*2, 3 and 4"):
        build_model("noscope-coral", fold)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'noscope-nope'; choose one of: .*noscope-coral.*cifar10"):
        build_model("noscope-nope", 2)


def test_bad_mode_and_combinations_are_value_errors():
    with pytest.raises(ValueError, match="unknown mode 'tiny'; choose one of: original, folded, efficientnet"):
        build_model("cifar10", 1, "tiny")
    with pytest.raises(ValueError, match="only for game tasks"):
        build_model("cifar10", 2, "efficientnet")
    with pytest.raises(ValueError, match="use mode 'folded'"):
        build_model("cifar10", 2, "original")
    with pytest.raises(ValueError, match="multiplier must be a positive number"):
        build_model("cifar10", 2, multiplier=0)


def test_batch_not_a_multiple_of_fold_is_a_clear_error():
    with pytest.raises(ValueError, match="batch of 5 images cannot be folded by f=2: use a multiple of 2"):
        build_classifier("noscope-coral", 2)(torch.randn(5, 3, 50, 50))


def test_the_original_resnet_pools_with_padding_counted_and_folded_ones_take_the_mean():
    """The authors' f=1 ResNet-18 averages the top-left 3x3 of the 4x4 map over 16; folded models average all 16."""
    maps = torch.randn(2, 512, 4, 4)
    original, _ = build_model("cifar10", 1, "original")
    torch.testing.assert_close(original.pool(maps).flatten(1), maps[:, :, :3, :3].sum((2, 3)) / 16)
    folded, _ = build_model("cifar10", 2, "folded")
    torch.testing.assert_close(folded.pool(maps[:, :int(512 * 2 ** 0.5)]).flatten(1),
                               maps[:, :int(512 * 2 ** 0.5)].mean((2, 3)))
