"""ResNet-18 for 32x32 CIFAR images, optionally folded."""
import torch
from torch import nn
from torch.nn import functional as F

from models.fold import widen
from models.init import init_weights


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity (or 1x1 conv + BN) shortcut, then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The CIFAR ResNet-18 (3x3 stem, no max-pool); widths int(64m) .. int(512m), f*K outputs."""

    def __init__(self, num_classes, fold=1, multiplier=1.0, in_channels=3, align=1):
        super().__init__()
        widths = [widen(w, multiplier, align) for w in (64, 128, 256, 512)]
        self.conv1, self.bn1 = conv3x3(in_channels * fold, widths[0]), nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for width, stride in zip(widths, (1, 2, 2, 2)):
            blocks += [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
            cin = width
        self.layers = nn.Sequential(*blocks)
        # The authors' original (f=1) pools with padding counted: the top-left 3x3 of the 4x4 map summed over 16;
        # their folded models take the plain mean (docs/protocol.md, section 2.3).
        self.pool = nn.AvgPool2d(4, padding=1) if fold == 1 else nn.AvgPool2d(4)
        self.linear = nn.Linear(widths[-1], num_classes * fold)
        self.apply(init_weights)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(self.pool(out), 1))
