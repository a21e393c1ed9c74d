"""The model zoo: `build_model(task, fold, mode)` for every task of the registry."""
import torch
from torch import nn
from torch.nn import functional as F

from config.tasks import USER, get_task
from models.fold import FoldedClassifier, check_align, check_fold, check_multiplier, fold_input, unfold_output
from models.fold_cnn import fold_cnn
from models.game import GameCNN, compound_scaled_game_cnn
from models.noscope import NoScopeCNN
from models.resnet import ResNet18
from models.user import load_model_file, user_classifier

MODES = ("original", "folded", "efficientnet")


def mode_of(fold, requested="folded"):
    """The mode (one of MODES: what a model is, as run.json, result.json, summary.csv and results CSVs name it) of
    fold (phi) `fold` when `requested` ("folded", --mode's default, or "efficientnet") was asked for: "efficientnet"
    for the baseline, else "original" at f=1 and "folded" above."""
    return "efficientnet" if requested == "efficientnet" else "original" if fold == 1 else "folded"

__all__ = ["MODES", "mode_of", "build_model", "build_classifier", "fold_cnn", "model_key", "FoldedClassifier", "fold_input",
           "unfold_output"]


def build_model(task, fold=1, mode="folded", multiplier=None, align=1):
    """Return `(model, input_shape)` for `task` at fold `fold`; `input_shape` is one input's (C, H, W).

    mode "folded": the FoldedCNN with fold f (f=1 is the original) and internal multiplier
    `multiplier` (default sqrt(f)); it takes f*C channels and returns f*K logits per input.
    mode "original": the unfolded CNN (fold must be 1).
    mode "efficientnet": the compound-scaled game baseline; `fold` is its coefficient phi.
    `align` > 1 (beyond the paper) rounds every widened layer of a FoldedCNN (f > 1) up to a multiple of it;
    the original keeps its widths, so speed-ups still compare with it.
    """
    task = get_task(task)
    fold = check_fold(fold)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "original" and fold != 1:
        raise ValueError(f"mode 'original' is the unfolded CNN (fold 1), got fold {fold}: use mode 'folded'")
    arch, c, hw, k = task.architecture, task.input_shape[0], tuple(task.input_shape[1:]), task.num_classes

    if mode == "efficientnet":
        if task.family != "game":
            raise ValueError(f"mode 'efficientnet' exists only for game tasks, not {task.name!r}")
        if multiplier is not None or check_align(align) != 1:
            raise ValueError("mode 'efficientnet' scales by phi (given as fold): drop the multiplier and align")
        model, hw = compound_scaled_game_cnn(hw, arch["conv_units"], arch["first_channels"],
                                             arch["unit_channels"], arch["last_channels"], k, phi=fold)
        return model, (c, *hw)

    m, align = check_multiplier(multiplier, fold), check_align(align) if fold > 1 else 1
    if task.family == "noscope":
        model = NoScopeCNN(arch["filters"], arch["layers"], arch["dense"], k, fold, m, hw, c, align=align)
    elif task.family == "game":
        model = GameCNN(hw, arch["conv_units"], arch["first_channels"], arch["unit_channels"],
                        arch["last_channels"], k, fold, m, c, align=align)
    else:
        model = ResNet18(k, fold, m, c, align=align)
    return model, (c * fold, *hw)


class ResizedClassifier(nn.Module):
    """The compound-scaled baseline on plain image batches: (N, C, H, W) images are resized (bilinear,
    antialiased) to its smaller input resolution, (N, K) logits come out. The resizing rule is this
    project's (docs/protocol.md, section 7)."""

    def __init__(self, net, hw):
        super().__init__()
        self.net, self.hw = net, tuple(hw)

    def forward(self, x):
        if tuple(x.shape[-2:]) != self.hw:
            x = F.interpolate(x, size=self.hw, mode="bilinear", align_corners=False, antialias=True)
        return self.net(x)


def build_classifier(task, fold=1, multiplier=None, mode="folded", align=1):
    """The model wrapped to take plain (N, C, H, W) image batches and return (N, K) logits: the FoldedCNN
    (mode "original" or "folded", fold 1 = the original) or the compound-scaled baseline (mode "efficientnet", fold =
    phi). A
    user's task (config.tasks.user_task) runs its model file: the original at f=1, models.fold_cnn's FoldedCNN above."""
    task = get_task(task)
    if task.family == USER:
        if mode == "efficientnet":
            raise ValueError(f"{task.name} is your own CNN: it has FoldedCNNs (mode folded), no mode {mode!r}")
        return user_classifier(task.model_file, task.input_shape, fold, multiplier, align)
    if mode == "efficientnet":
        model, shape = build_model(task, fold, "efficientnet", multiplier, align)
        return ResizedClassifier(model, shape[1:])
    model, _ = build_model(task, fold, "folded", multiplier, align)
    return FoldedClassifier(model, fold)


def narrow_classifier(task, multiplier):
    """The original (f=1) of `task` rebuilt with every width `multiplier` times its own, freshly initialised: the
    narrow copy a folded student's slots start from (models.warm_start.start_slots_apart). A user's CNN is rebuilt by
    models.fold_cnn at f=1; its f=1 run itself stays the model as given."""
    task = get_task(task)
    if task.family == USER:
        return fold_cnn(load_model_file(task.model_file), 1, multiplier,
                        example_input=torch.rand(2, *task.input_shape))
    return build_classifier(task, 1, multiplier)


def model_key(task, mode="folded"):
    """The model's name in `config/model_map.json` and in results CSVs (the baseline has its own)."""
    task = get_task(task)
    return task.efficientnet_key if mode == "efficientnet" else task.model_map_key
