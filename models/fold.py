"""Folding primitives: f images become one input of f*C channels, f*K logits become f rows."""
import math
import numbers

import torch
from torch import nn


def check_fold(fold):
    """Return `fold` if it is a positive integer; a ValueError naming the allowed values otherwise."""
    if isinstance(fold, bool) or not isinstance(fold, numbers.Integral) or fold < 1:
        raise ValueError(
            f"fold must be a positive integer (1 is the original CNN; the paper uses 2, 3 and 4), got {fold!r}"
        )
    return int(fold)


def default_multiplier(fold):
    """The paper's internal multiplier: sqrt(f), so FLOPs per image stay about constant."""
    return math.sqrt(check_fold(fold))


def check_multiplier(multiplier, fold):
    """`multiplier`, or sqrt(fold) when None; a ValueError unless it is a positive number."""
    if multiplier is None:
        return default_multiplier(fold)
    if isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real) or not multiplier > 0:
        raise ValueError(f"multiplier must be a positive number (default sqrt(fold)), got {multiplier!r}")
    return float(multiplier)


def check_align(align):
    """`align` if it is a positive integer (1: the paper's widths); a ValueError otherwise."""
    if isinstance(align, bool) or not isinstance(align, numbers.Integral) or align < 1:
        raise ValueError(f"align must be a positive integer (1 keeps the paper's widths; try 8 or 16), got {align!r}")
    return int(align)


def widen(channels, multiplier, align=1):
    """An intermediate layer's width in a FoldedCNN: truncated with int(), as in the paper; with `align` > 1
    rounded up to a multiple of it (an option beyond the paper: vector units and tensor cores favour such widths)."""
    width = max(1, int(channels * multiplier))
    return -(-width // align) * align


def whole_groups(images, fold):
    """The most images, at most `images`, that fill whole folded inputs of `fold` images: a multiple of f."""
    return images // fold * fold


def fold_input(x, fold):
    """(N, C, H, W) -> (N/f, f*C, H, W): images g*f .. g*f+f-1 form input g, image-major in channels."""
    n, c, h, w = x.shape
    if n % fold:
        raise ValueError(f"batch of {n} images cannot be folded by f={fold}: use a multiple of {fold}")
    return x.reshape(n // fold, fold * c, h, w)


def unfold_output(y, fold):
    """(N/f, f*K) -> (N, K): row i holds image i's logits."""
    groups, fk = y.shape
    return y.reshape(groups * fold, fk // fold)


class FoldedClassifier(nn.Module):
    """Runs a FoldedCNN on plain image batches: (N, C, H, W) images in, (N, K) logits out."""

    def __init__(self, net, fold):
        super().__init__()
        self.net = net
        self.fold = check_fold(fold)

    def forward(self, x):
        folded = fold_input(x, self.fold)
        if self.fold > 1 and x.is_contiguous(memory_format=torch.channels_last):
            folded = folded.contiguous(memory_format=torch.channels_last)
        return unfold_output(self.net(folded), self.fold)
