"""Fold any CNN classifier: `fold_cnn(model, f)` builds the FoldedCNN of the same structure.

The model is traced with torch.fx and its graph replayed on a folded example input, layer by layer;
each layer that sets a width is rebuilt, freshly initialised, at its folded width:

- the input has f*C channels; every Conv2d and Linear emits int(width * multiplier) (default
  sqrt(f); with `align` N rounded up to a multiple of N), except the layers that produce the logits,
  which emit f*K;
- a layer's input width is whatever reaches it (so a Linear after a flatten, a concatenation or a
  residual addition inherits its width); BatchNorm and GroupNorm follow their input;
- a depthwise Conv2d (groups == in channels) stays depthwise; other groups are kept, with the
  folded width rounded down to a multiple of them;
- layers without parameters (activations, pooling, dropout, flatten, identity) are kept as they
  are, hyper-parameters included. (The paper's CIFAR ResNet-18 is the one model whose folded form
  changes a layer: its original pools with padding, its folded models without. fold_cnn keeps the
  pool the original has; `build_model` gives the paper's.)

A model that does not treat each image of a batch on its own (its output for one image depends on
the others), that uses a layer it cannot rebuild, or whose graph fixes a size that folding changes
is refused with a ValueError naming the layer.
"""
import copy
import math

import torch
from torch import fx, nn

from models.fold import FoldedClassifier, check_align, check_fold, check_multiplier, widen

WIDTH_SETTERS = (nn.Conv2d, nn.Linear)  # layers whose output width the transform chooses
WIDTH_FOLLOWERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)  # layers whose width is their input's


def fold_cnn(model, fold, multiplier=None, example_input=None, align=1):
    """The FoldedCNN of `model` (an (N, C, H, W) -> (N, K) classifier) at fold `fold`, wrapped to take and
    return plain image batches (a FoldedClassifier; its `.net` takes (N/f, f*C, H, W)).

    `example_input`: a batch of images the model accepts (at least 2); default: 2 random images of the first
    convolution's channels at 64x64. `align` > 1 rounds every widened layer up to a multiple of it (beyond
    the paper; fold 1 keeps the original's widths).
    """
    fold, multiplier, align = check_fold(fold), check_multiplier(multiplier, fold), check_align(align)
    align = align if fold > 1 else 1
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many kinds; the message says which construct it could not trace
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx ({e}); fold_cnn needs a model "
                         "without data-dependent control flow") from None
    example = example_images(graph_module, example_input)
    values = check_independent(graph_module, example)
    heads = logit_layers(graph_module)
    modules = {}
    folded = replay(graph_module, fold_example(example, fold), fold, lambda c: widen(c, multiplier, align), heads,
                    modules, align)
    logits = values[output_node(graph_module).args[0].name]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("fold_cnn folds classifiers that return (N, K) logits; this model returns "
                         f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}")
    if tuple(folded.shape) != (2, fold * logits.shape[1]):
        raise ValueError(f"the folded model returns {tuple(folded.shape)} for 2 inputs, not "
                         f"(2, {fold * logits.shape[1]}): fold_cnn folds classifiers whose last layer gives the logits")
    net = copy.deepcopy(graph_module)  # the original's module tree and order, with every called layer replaced
    for target, module in modules.items():
        net.set_submodule(target, module)
    return FoldedClassifier(net.train(model.training), fold)


def fold_example(example, fold):
    """2 folded inputs of f*C channels, each from the example's first image repeated."""
    return example[:1].repeat(2, fold, 1, 1)


def output_node(graph_module):
    return next(n for n in graph_module.graph.nodes if n.op == "output")


def example_images(graph_module, example_input):
    if example_input is not None:
        if example_input.dim() != 4 or example_input.shape[0] < 2:
            raise ValueError(f"example_input must be a batch of at least 2 images (N, C, H, W), got shape "
                             f"{tuple(example_input.shape)}")
        return example_input.detach().float()
    first = next((m for m in graph_module.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError("the model has no Conv2d to read its input channels from: pass example_input")
    return torch.randn(2, first.in_channels, 64, 64)


class Recorder(fx.Interpreter):
    """Runs the graph and keeps every node's value, by node name."""

    def __init__(self, graph_module):
        super().__init__(graph_module)
        self.values = {}

    def run_node(self, node):
        value = super().run_node(node)
        self.values[node.name] = value
        return value


def record(model, images):
    """Every node's value when `model` runs on `images`."""
    recorder = Recorder(model)
    recorder.run(images)
    return recorder.values


def same_image(batched, i, alone):
    """Whether row `i` of a node's batched value is the value it has when image `i` runs alone, up to rounding: a
    difference within 1e-4 of the node's largest value (a batch and a single image may take different convolution
    kernels, whose rounding grows with depth; a layer that mixes images differs by the values' own size)."""
    if not (batched.dim() > 0 and isinstance(alone, torch.Tensor) and alone.shape == batched[i:i + 1].shape):
        return False
    if not batched.is_floating_point():
        return torch.equal(alone, batched[i:i + 1])
    scale = batched.abs().max().item() if batched.numel() else 0.0
    return (alone - batched[i:i + 1]).abs().max().item() <= 1e-4 * scale + 1e-5 if alone.numel() else True


@torch.no_grad()
def check_independent(graph_module, images):
    """Every node's value on `images` (eval mode); a ValueError naming the first node whose value for one image
    depends on the other images of the batch."""
    model = copy.deepcopy(graph_module).eval()
    batched = Recorder(model)
    try:
        batched.run(images)
    except Exception as e:
        raise ValueError(f"the model fails on the example input of shape {tuple(images.shape)} ({e}): pass an "
                         "example_input it accepts") from None
    alone = [record(model, images[i:i + 1]) for i in range(images.shape[0])]
    for node in model.graph.nodes:
        value = batched.values.get(node.name)
        if node.op in ("placeholder", "get_attr") or not isinstance(value, torch.Tensor):
            continue  # the input, or a weight read directly (replay names it)
        if not all(same_image(value, i, values.get(node.name)) for i, values in enumerate(alone)):
            raise ValueError(f"cannot fold the model: layer {describe(model, node)} mixes the images of a batch "
                             "(its output for one image depends on the others), so a folded model could not keep "
                             "them apart")
    return batched.values


def describe(graph_module, node):
    """`name (what it is)` of a graph node, for messages."""
    if node.op == "call_module":
        return f"{node.target} ({type(graph_module.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", node.target)
    return f"{node.name} ({node.op} {target})"


def logit_layers(graph_module):
    """Names of the width-setting layers whose outputs reach the model's output through width-keeping nodes
    only: they emit the logits, f*K of them once folded."""
    heads, stack, seen = set(), list(output_node(graph_module).all_input_nodes), set()
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), WIDTH_SETTERS):
            heads.add(node.target)
        elif node.op == "placeholder":
            raise ValueError("the model's output is reached from its input without a Conv2d or Linear: "
                             "nothing to fold")
        else:
            stack.extend(node.all_input_nodes)
    return heads


def rebuilt(module, name, x, fold, widened, head, align=1):
    """`module` rebuilt for the folded input `x` (freshly initialised), or a ValueError naming `name`;
    `widened(width)` is an inner layer's folded width."""
    width = x.shape[1] if x.dim() > 1 else x.shape[-1]
    if isinstance(module, nn.Linear):
        out = fold * module.out_features if head else widened(module.out_features)
        return nn.Linear(x.shape[-1], out, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d):
        out = fold * module.out_channels if head else widened(module.out_channels)
        groups = module.groups
        if groups > 1 and groups == module.in_channels:  # depthwise (possibly with a channel multiplier)
            groups, out = width, width * (module.out_channels // module.in_channels)
        elif groups > 1:
            if width % groups:
                raise ValueError(f"cannot fold layer {name} (Conv2d, groups={groups}): its folded input has {width} "
                                 f"channels, not a multiple of its groups")
            step = math.lcm(groups, align)  # aligned: up to a multiple of both; else down to the groups'
            out = -(-out // step) * step if align > 1 else max(groups, out // groups * groups)
        return nn.Conv2d(width, out, module.kernel_size, module.stride, module.padding, module.dilation, groups,
                         module.bias is not None, module.padding_mode)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(module)(width, module.eps, module.momentum, module.affine, module.track_running_stats)
    if isinstance(module, nn.GroupNorm):
        if width % module.num_groups:
            raise ValueError(f"cannot fold layer {name} (GroupNorm of {module.num_groups} groups): its folded "
                             f"input has {width} channels")
        return nn.GroupNorm(module.num_groups, width, module.eps, module.affine)
    if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        raise ValueError(f"cannot fold layer {name} ({type(module).__name__}): it has weights, and fold_cnn rebuilds "
                         "only Conv2d, Linear, BatchNorm and GroupNorm at a new width")
    return copy.deepcopy(module)


@torch.no_grad()
def replay(graph_module, folded_input, fold, widened, heads, modules, align=1):
    """Run the graph on `folded_input`, rebuilding each layer for the width that reaches it (into `modules`,
    by target); returns the folded output."""
    env = {}

    def value(arg):
        return fx.node.map_arg(arg, lambda n: env[n.name])

    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            env[node.name] = folded_input
        elif node.op == "output":
            return value(node.args[0])
        elif node.op == "get_attr":
            raise ValueError(f"cannot fold the model: it reads the tensor {node.target} directly, whose size "
                             "folding would change; make it a layer")
        else:
            args, kwargs = value(node.args), value(node.kwargs)
            try:
                if node.op == "call_module":
                    module = graph_module.get_submodule(node.target)
                    if node.target not in modules:
                        modules[node.target] = rebuilt(module, node.target, args[0], fold, widened,
                                                       node.target in heads, align)
                    env[node.name] = modules[node.target].eval()(*args, **kwargs)
                elif node.op == "call_method":
                    env[node.name] = getattr(args[0], node.target)(*args[1:], **kwargs)
                else:
                    env[node.name] = node.target(*args, **kwargs)
            except (RuntimeError, TypeError, IndexError) as e:
                raise ValueError(f"cannot fold the model at {describe(graph_module, node)}: {e} (a size fixed in "
                                 "the model that folding changes?)") from None
