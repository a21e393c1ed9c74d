"""BatchNorm as a training aid for CNNs that have no normalisation (the game and NoScope CNNs, many users' small CNNs).

While a student trains, every convolution with a bias is followed by a BatchNorm2d (`add_batchnorm`), started so that
the network computes what it did before (`calibrate_batchnorm`): a warm start from the teacher stays one. When the
weights are saved, each BatchNorm's running statistics and affine are folded into its convolution (`plain_state`),
so best.pth holds the model's exact architecture, and loads, exports and counts FLOPs like any other.

Why: a folded student of a plain ReLU CNN stalls on a plateau for most of its schedule on real images (textures:
training top-1 0.40-0.50 for 100 of 120 epochs); normalised, it does not (results/accuracy/choices.md, round 15).
"""
import contextlib

import torch
from torch import nn


class NormedConv(nn.Module):
    """A convolution followed by a BatchNorm2d of its outputs (`plain_state` folds the pair back into one conv)."""

    def __init__(self, conv):
        super().__init__()
        self.conv, self.norm = conv, nn.BatchNorm2d(conv.out_channels, device=conv.weight.device)

    def forward(self, x):
        return self.norm(self.conv(x))


NORMALISATIONS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def add_batchnorm(net):
    """Put a BatchNorm2d after every convolution of `net` that has a bias, unless `net` normalises already (it has a
    BatchNorm, GroupNorm or LayerNorm of its own: it trains as it is); returns how many were added."""
    if any(isinstance(m, NORMALISATIONS) for m in net.modules()):
        return 0
    return _add_batchnorm(net)


def _add_batchnorm(net):
    added = 0
    for name, child in list(net.named_children()):
        if isinstance(child, nn.Conv2d) and child.bias is not None:
            setattr(net, name, NormedConv(child))
            added += 1
        elif not isinstance(child, NormedConv):
            added += _add_batchnorm(child)
    return added


def normed_convs(net):
    """(parent module, attribute name, NormedConv) of every NormedConv in `net`."""
    return [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
            if isinstance(child, NormedConv)]


@contextlib.contextmanager
def without_batchnorm(net):
    """`net` with every NormedConv replaced by its own convolution (the same module) while the block runs: code that
    knows the model's architecture (a warm start from the teacher) works on it, and what it changes stays."""
    found = normed_convs(net)
    for parent, name, normed in found:
        setattr(parent, name, normed.conv)
    try:
        yield net
    finally:
        for parent, name, normed in found:
            setattr(parent, name, normed)


@torch.no_grad()
def calibrate_batchnorm(net, inputs):
    """Set each BatchNorm's affine (and running statistics) to the mean and spread of its input over `inputs` (a batch
    of `net`'s inputs), in order, so that `net` in training mode computes on `inputs` what it did without them."""
    norms = [normed.norm for _, _, normed in normed_convs(net)]
    was_training = net.training
    net.train()
    for norm in norms:
        seen = []
        hook = norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        try:
            net(inputs)
        finally:
            hook.remove()
        out = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1).float()
        mean, var = out.mean(dim=1), out.var(dim=1, unbiased=False)
        norm.weight.copy_((var + norm.eps).sqrt())
        norm.bias.copy_(mean)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
    net.train(was_training)
    return len(norms)


@torch.no_grad()
def plain_state(model):
    """`model`'s state dict with every NormedConv folded into a plain convolution (its running statistics, as in
    evaluation): the keys and shapes of the model without BatchNorm."""
    state = model.state_dict()
    for name, module in model.named_modules():
        if not isinstance(module, NormedConv):
            continue
        prefix = f"{name}." if name else ""
        for key in [k for k in state if k.startswith(prefix + "conv.") or k.startswith(prefix + "norm.")]:
            del state[key]
        conv, norm = module.conv, module.norm
        scale = norm.weight.float() / (norm.running_var.float() + norm.eps).sqrt()
        weight = conv.weight.float() * scale.reshape(-1, *[1] * (conv.weight.dim() - 1))
        bias = (conv.bias.float() - norm.running_mean.float()) * scale + norm.bias.float()
        state[prefix + "weight"] = weight.to(conv.weight.dtype)
        state[prefix + "bias"] = bias.to(conv.bias.dtype)
    return state
