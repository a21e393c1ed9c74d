"""Print the arithmetic intensity (FLOPs per byte moved) of the original and folded CNNs.

For each conv and linear layer, at B inputs per batch (B = batch_size / f for a FoldedCNN):
  ops      = 2 * B * (kernel area * output positions * C_in * C_out / groups) + B * outputs (bias)
  elements = parameters + B * (input + output activations)
and AI = total ops / (bytes per element * total elements). CSV on stdout, one row per model.
"""
import argparse
import csv
import sys

import torch
from torch import nn

from config.tasks import all_tasks
from models import build_model
from util.common import positive_int

FOLDS = (1, 2, 3, 4)
HEADER = ["model", "batch_size", "original_AI", "tformed_AI_2", "tformed_AI_3", "tformed_AI_4"]


def layer_costs(model, input_shape):
    """Per conv/linear layer, for one input: (ops, bias adds, parameters, input + output elements)."""
    costs, hooks = [], []

    def record(layer, inputs, output):
        x = inputs[0]
        if isinstance(layer, nn.Conv2d):
            kernel_area = layer.kernel_size[0] * layer.kernel_size[1]
            positions = output.shape[2] * output.shape[3]
            macs = kernel_area * positions * layer.in_channels * layer.out_channels // layer.groups
        else:
            macs = layer.in_features * layer.out_features
        bias_adds = output[0].numel() if layer.bias is not None else 0
        params = sum(p.numel() for p in layer.parameters())
        costs.append((2 * macs, bias_adds, params, x[0].numel() + output[0].numel()))

    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            hooks.append(layer.register_forward_hook(record))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return costs


def arithmetic_intensity(task, fold, mode, inputs, bytes_per_elt):
    """AI of `task`'s model at `inputs` inputs per batch (each holding `fold` images when folded)."""
    model, input_shape = build_model(task, fold, mode)
    ops = elements = 0
    for layer_ops, bias_adds, params, activations in layer_costs(model, input_shape):
        ops += inputs * (layer_ops + bias_adds)
        elements += params + inputs * activations
    return ops / (bytes_per_elt * elements)


def ai_table(batch_size=1024, bytes_per_elt=2, match_published=False):
    """Rows of the table: game and NoScope CNNs at f = 1..4, then the compound-scaled baselines."""
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=positive_int, default=1024,
                        help="images per batch (default 1024, the paper's); at least 4, the largest fold")
    parser.add_argument("--bytes_per_elt", type=positive_int, default=2,
                        help="bytes per element moved (default 2: fp16; 4 for fp32)")
    parser.add_argument("--match_published", action="store_true",
                        help="compute the efficientnet phi=2 column at batch_size/2 inputs, as the published table did")
    args = parser.parse_args(argv)
    if args.batch_size < max(FOLDS):
        parser.error(f"--batch_size must be at least {max(FOLDS)} so that every fold gets one input")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(HEADER)
    for row in ai_table(args.batch_size, args.bytes_per_elt, args.match_published):
        writer.writerow([f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v) for v in row])


if __name__ == "__main__":
    main()
