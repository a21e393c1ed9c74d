"""FLOPs and arithmetic intensity of the models, from one pass of forward hooks over one input.

FLOPs are 2 x the multiply-accumulates that thop (the paper's counter) assigns to each leaf layer:
  Conv2d             output elements x (C_in / groups) x kernel area
  Linear             output elements x in_features
  BatchNorm (affine) 4 x input elements
  AvgPool2d          output elements;  AdaptiveAvgPool2d: (pooled area + 1) x output elements
  anything else      0 (ReLU, max-pooling, dropout, flatten)
One input is one image for the original CNN and the compound-scaled baseline, f images for a
FoldedCNN. `config/model_map.json` holds these counts for every model (`./flop_count.sh --write`).

Arithmetic intensity (docs/protocol.md, "FLOPs and arithmetic intensity") counts the conv and
linear layers only, at B inputs per batch:
  ops      = 2 * B * (kernel area * output positions * C_in * C_out / groups) + B * outputs (bias)
  elements = parameters + B * (input + output activations)
  AI       = total ops / (bytes per element * total elements)
"""
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from config.tasks import CONFIG_DIR, all_tasks, get_task
from models import MODES, build_model, model_key
from models.fold import check_fold

MODEL_MAP = CONFIG_DIR / "model_map.json"
FOLDS = (1, 2, 3, 4)


@dataclass
class Layer:
    """One leaf layer's costs for one input."""

    module: nn.Module
    macs: float          # by thop's rule for this kind of layer
    ops: int             # conv/linear only: 2 x MACs + bias adds (arithmetic intensity)
    params: int
    activations: int     # input + output elements


def _macs(layer, x, y):
    if isinstance(layer, nn.Conv2d):
        return y.numel() * (x.shape[1] // layer.groups) * layer.weight[0, 0].numel()
    if isinstance(layer, nn.Linear):
        return y.numel() * layer.in_features
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return 2 * x.numel() * (2 if layer.affine else 1)
    if isinstance(layer, nn.AvgPool2d):
        return y.numel()
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        area = (x.shape[2] / y.shape[2]) * (x.shape[3] / y.shape[3])
        return int((area + 1) * y.numel())
    return 0


def layer_costs(model, input_shape):
    """The costs of every leaf layer of `model` on one input of shape `input_shape` (C, H, W)."""
    layers, hooks = [], []

    def record(layer, inputs, output):
        x = inputs[0]
        ops = 0
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            if isinstance(layer, nn.Conv2d):
                kernel_area = layer.kernel_size[0] * layer.kernel_size[1]
                macs = kernel_area * output.shape[2] * output.shape[3] * layer.in_channels * layer.out_channels
                macs //= layer.groups
            else:
                macs = layer.in_features * layer.out_features
            ops = 2 * macs + (output[0].numel() if layer.bias is not None else 0)
        layers.append(Layer(layer, _macs(layer, x, output), ops, sum(p.numel() for p in layer.parameters()),
                            x[0].numel() + output[0].numel()))

    for layer in model.modules():
        if not any(True for _ in layer.children()):
            hooks.append(layer.register_forward_hook(record))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return layers


def count_model_flops(model, input_shape):
    """FLOPs (2 x MACs, thop's rules) of `model` on one input of shape (C, H, W)."""
    return int(round(2 * sum(layer.macs for layer in layer_costs(model, input_shape))))


def count_flops(task, fold=1, mode="folded", align=1):
    """FLOPs of one forward pass on one input of `task`'s model (`align`: build_model's)."""
    return count_model_flops(*build_model(task, fold, mode, align=align))


def model_map(align=1):
    """`{key: {"og_ops": N, "fold2_ops": N, ...}}` for every model the paper measures; with `align` > 1 the
    FoldedCNNs' widened layers are aligned (beyond the paper) and the compound-scaled baselines are left out."""
    tasks = all_tasks().values()
    result = {}
    for task in tasks:
        result[task.model_map_key] = {"og_ops": count_flops(task, 1, "original")}
        result[task.model_map_key].update({f"fold{f}_ops": count_flops(task, f, align=align) for f in FOLDS[1:]})
    if align > 1:
        return result
    for task in tasks:
        if task.compound_scaling_baseline:
            result[task.efficientnet_key] = {"og_ops": count_flops(task, 1, "efficientnet"),
                                            "fold2_ops": count_flops(task, 2, "efficientnet")}
    return result


def load_model_map(path=MODEL_MAP):
    """The committed FLOP counts."""
    return json.loads(Path(path).read_text())


def flops_per_image(task, mode="folded", fold=1, counts=None):
    """FLOPs one image costs with `task`'s model in `mode` at `fold` (phi for efficientnet), from model_map.json
    (the folds the paper measured), or counted with thop for any other fold."""
    task, fold = get_task(task), check_fold(fold)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "original" and fold != 1:
        raise ValueError(f"mode 'original' is the unfolded CNN (fold 1), got fold {fold}: use mode 'folded'")
    counts = load_model_map() if counts is None else counts
    key = model_key(task, mode)
    if key not in counts:
        raise ValueError(f"{MODEL_MAP.name} has no model {key!r} (task {task.name!r}, mode {mode!r}); "
                         f"it has: {', '.join(counts)}. Run ./flop_count.sh --write after adding a model")
    ops_key = "og_ops" if fold == 1 else f"fold{fold}_ops"
    ops = counts[key][ops_key] if ops_key in counts[key] else count_flops(task, fold, mode)  # any f: counted here
    return ops / (fold if mode == "folded" else 1)


def arithmetic_intensity(task, fold, mode, inputs, bytes_per_elt, align=1):
    """AI of `task`'s model at `inputs` inputs per batch (each holding `fold` images when folded)."""
    ops = elements = 0
    for layer in layer_costs(*build_model(task, fold, mode, align=align)):
        if isinstance(layer.module, (nn.Conv2d, nn.Linear)):
            ops += inputs * layer.ops
            elements += layer.params + inputs * layer.activations
    return ops / (bytes_per_elt * elements)


def ai_table(batch_size=1024, bytes_per_elt=2, match_published=False):
    """Rows `[name, batch, AI at f=1..4]`: game and NoScope CNNs, then the baselines (phi 1, 2)."""
    tasks = all_tasks().values()
    game = [t for t in tasks if t.family == "game" and t.compound_scaling_baseline]
    noscope = [t for t in tasks if t.family == "noscope"]
    rows = []
    for name, task in [(f"game-{t.name}", t) for t in game] + [(t.name, t) for t in noscope]:
        ais = [arithmetic_intensity(task, f, "folded", batch_size // f, bytes_per_elt) for f in FOLDS]
        rows.append([name, batch_size, *ais])
    for task in game:
        phi2_inputs = batch_size // 2 if match_published else batch_size
        ais = [arithmetic_intensity(task, 1, "efficientnet", batch_size, bytes_per_elt),
               arithmetic_intensity(task, 2, "efficientnet", phi2_inputs, bytes_per_elt)]
        rows.append([f"efficientnet-{task.name}", batch_size, *ais, None, None])
    return rows
