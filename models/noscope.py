"""The NoScope specialized CNNs (NoScope, VLDB 2017, Table 2), optionally folded."""
import torch
from torch import nn

from models.fold import widen
from models.init import init_weights


def conv_block(cin, cout, dropout):
    """conv-ReLU-conv-ReLU-maxpool 2/2 [-dropout 0.25]."""
    layers = [
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
    ]
    return layers + ([nn.Dropout(0.25)] if dropout else [])


class NoScopeCNN(nn.Module):
    """`layers` 2 or 4 convs of `filters` (then 2x`filters`) channels, a `dense` hidden layer.

    With fold f the input has 3f channels, every hidden width is scaled by `multiplier` and
    truncated (then rounded up to a multiple of `align`), and the output has f*K logits.
    """

    def __init__(self, filters, layers, dense, num_classes, fold=1, multiplier=1.0, image_hw=(50, 50),
                 in_channels=3, dropout=False, align=1):
        super().__init__()
        width = widen(filters, multiplier, align)
        feats = conv_block(in_channels * fold, width, dropout)
        if layers > 2:
            feats += conv_block(width, widen(2 * filters, multiplier, align), dropout)
            width = widen(2 * filters, multiplier, align)
        self.features = nn.Sequential(*feats)
        pools = 2 if layers > 2 else 1
        flat = width * (image_hw[0] >> pools) * (image_hw[1] >> pools)
        hidden = widen(dense, multiplier, align)
        head = [nn.Linear(flat, hidden), nn.ReLU(inplace=True)]
        head += [nn.Dropout(0.25)] if dropout else []
        self.classifier = nn.Sequential(*head, nn.Linear(hidden, num_classes * fold))
        self.apply(init_weights)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
