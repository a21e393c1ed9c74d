"""A user's own CNNs for the real-image benchmark, one function per task (util/real_table.py --model_file
docs/examples/real_models.py takes FUNCTION = the task's name): what a user would write for small RGB images, not
one of the registry's models. A 3-block CNN with a residual second block, global average pooling and a linear
classifier (any input size).
"""
import torch
from torch import nn


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    """x + body(x): the body keeps the width."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return torch.relu(x + self.body(x))


def three_blocks(classes, width=32):
    return nn.Sequential(
        block(3, width), nn.MaxPool2d(2),
        Residual(nn.Sequential(block(width, width), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))),
        nn.MaxPool2d(2),
        block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


def digits():
    return three_blocks(10)


def photos():
    return three_blocks(10)


def textures():
    return three_blocks(4)


def holdout():
    return three_blocks(6)
