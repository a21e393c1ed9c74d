"""models.batchnorm: the training BatchNorm starts as an identity and folds back into the model's own convolutions."""
import torch
from torch import nn

from config import tasks
from models import build_classifier
from models.batchnorm import NormedConv, add_batchnorm, calibrate_batchnorm, plain_state, without_batchnorm
from models.fold import fold_input


def game_student(fold=4):
    torch.manual_seed(0)
    return build_classifier(tasks.get_task("lol/goldnumber-fraction"), fold)


def images(count=32):
    return torch.rand(count, *tasks.get_task("lol/goldnumber-fraction").input_shape)


def test_every_conv_with_a_bias_gets_one_unless_the_model_normalises_already():
    model = game_student()
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    assert add_batchnorm(model.net) == len(convs) == 5
    assert sum(isinstance(m, NormedConv) for m in model.net.modules()) == 5
    assert add_batchnorm(model.net) == 0  # twice is once
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    assert add_batchnorm(plain) == 0
    normed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))  # normalises already
    assert add_batchnorm(normed) == 0 and not any(isinstance(m, NormedConv) for m in normed.modules())


def test_calibrated_it_computes_what_the_model_did():
    model = game_student().train()
    x = fold_input(images(), 4)
    before = model.net(x)
    add_batchnorm(model.net)
    assert calibrate_batchnorm(model.net, x) == 5
    assert model.net.training
    assert torch.allclose(model.net(x), before, atol=1e-4, rtol=1e-4)


def test_folded_back_it_is_the_plain_architecture_and_computes_the_same():
    model = game_student()
    x = images()
    add_batchnorm(model.net)
    calibrate_batchnorm(model.net, fold_input(x, 4))
    for m in model.net.modules():  # statistics and affine that are not an identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    plain = game_student()
    state = plain_state(model)
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    assert torch.allclose(plain.eval()(x), model.eval()(x), atol=1e-4, rtol=1e-4)


def test_without_it_the_model_is_its_own_architecture_for_a_while():
    model = game_student()
    add_batchnorm(model.net)
    with without_batchnorm(model.net) as net:
        assert set(net.state_dict()) == set(game_student().net.state_dict())
        next(m for m in net.modules() if isinstance(m, nn.Conv2d)).weight.data.fill_(0.5)
    assert sum(isinstance(m, NormedConv) for m in model.net.modules()) == 5
    assert next(m for m in model.net.modules() if isinstance(m, NormedConv)).conv.weight.eq(0.5).all()
