"""The paper's weight initialisation, shared by every model."""
import torch
from torch import nn


def init_weights(module):
    """Conv: Xavier-uniform with the ReLU gain; linear: N(0, 0.01); biases 0; BatchNorm 1 and 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.01)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and module.bias is not None:
        nn.init.zeros_(module.bias)


@torch.no_grad()
def centre_on_data(net, inputs):
    """Data-dependent start (LSUV, Mishkin and Matas 2016): every conv and linear layer with a bias, but the last
    layer, is rescaled and shifted, in order, so that each of its output channels has mean 0 and standard deviation 1
    over `inputs` (a batch of the model's inputs). Layers without a bias (followed by BatchNorm) are left alone.

    Why: frames of a static camera share one background, so under the paper's initialisation a hidden unit is on
    for every image or for none, and a folded student on the NoScope stand-ins predicts the majority class for
    epochs before it separates them (results/accuracy/choices.md, round 8). Returns the number of layers changed."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    changed = 0
    for layer in layers:
        if layer.bias is None:
            continue
        seen = []
        hook = layer.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
        try:
            net(inputs)
        finally:
            hook.remove()
        out = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1).float()
        mean, std = out.mean(dim=1), out.std(dim=1).clamp_min(1e-6)
        layer.weight.div_(std.reshape((-1,) + (1,) * (layer.weight.dim() - 1)).to(layer.weight.dtype))
        layer.bias.copy_(((layer.bias - mean) / std).to(layer.bias.dtype))
        changed += 1
    return changed
