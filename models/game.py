"""The game-scraping CNNs (template `1_3s_1_convnet`) and their compound-scaled baseline."""
import torch
from torch import nn

from models.fold import widen
from models.init import init_weights


class GameCNN(nn.Module):
    """conv-pool(k3 s2), `conv_units` x [3 convs, pool(k3 s1)], conv-pool(k3 s2), linear.

    With fold f the input has 3f channels, every conv width is scaled by `multiplier` and
    truncated (then rounded up to a multiple of `align`), and the output has f*K logits. `max_convs` keeps only the first convs, in order:
    a block left without convs loses its pool too (the compound-scaled baseline's depth scaling).
    """

    def __init__(self, image_hw, conv_units, first_channels, unit_channels, last_channels, num_classes,
                 fold=1, multiplier=1.0, in_channels=3, max_convs=None, align=1):
        super().__init__()
        blocks = [(1, first_channels, 2)] + [(3, unit_channels, 1)] * conv_units + [(1, last_channels, 2)]
        budget = sum(n for n, _, _ in blocks) if max_convs is None else max_convs
        layers, cin = [], in_channels * fold
        for n_convs, channels, pool_stride in blocks:
            kept = min(n_convs, budget)
            if kept == 0:
                break
            budget -= kept
            cout = widen(channels, multiplier, align)
            for _ in range(kept):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(3, pool_stride))
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels * fold, *image_hw)).numel()
        self.classifier = nn.Linear(flat, num_classes * fold)
        self.apply(init_weights)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def compound_scaled_game_cnn(image_hw, conv_units, first_channels, unit_channels, last_channels,
                             num_classes, phi):
    """The paper's baseline: the game CNN scaled *down* in width, depth and resolution by phi.

    Channels x (1/1.1)^(phi-1), conv count int(n (1/1.1)^(phi-1)), input H, W / 1.15^(phi-1), each
    truncated. Returns the model and the (H, W) it takes; phi = 1 is the original game CNN.
    """
    scale = (1 / 1.1) ** (phi - 1)
    hw = tuple(int(s / 1.15 ** (phi - 1)) for s in image_hw)
    model = GameCNN(hw, conv_units, first_channels, unit_channels, last_channels, num_classes,
                    multiplier=scale, max_convs=int((1 + 3 * conv_units + 1) * scale))
    return model, hw
