"""ONNX export of a trained FoldedCNN checkpoint, checked against PyTorch before the file is written.

Input `x`, output `logits`, the batch dimension dynamic:
  default  the FoldedCNN itself: x is (N, f*C, H, W) folded inputs (f images concatenated along the
           channels, image-major), logits are (N, f*K); logits[n, i*K:(i+1)*K] belong to image i of
           input n.
  images   the network wrapped with its folding: x is (N, C, H, W) plain images with N a multiple of
           f, logits are (N, K), row i for image i.
"""
import dataclasses
import json
from pathlib import Path

import onnx
import torch

from config.tasks import USER
from datasets import DATA_DIR, load_splits
from models.fold import fold_input, unfold_output, whole_groups
from util.core.files import filesystem_failure, write_atomic
from util.runtime.int8 import (CALIBRATION_BATCH, check_calibration, int8_instructions, quantize, quantized_ops,
                              weight_bits)
from util.runtime.backends import backend_problem, logits_tolerance
from util.runtime.onnx import cpu_runner, onnx_model
from util.train.checkpoint import load_classifier, task_of


@dataclasses.dataclass(frozen=True)
class Int8:
    """export(..., int8=Int8(...)): quantize to int8, calibrated on `calibration` training images (a seeded
    sample), and refuse a model whose top-1 on the test split falls more than `max_drop` points below fp32's."""

    calibration: int = 512
    max_drop: float = 0.5
    data_dir: str = str(DATA_DIR)
    data_root: str | None = None
    weight_bits: int | None = None  # 7 or 8; None: int8.weight_bits() decides from this CPU
    calibration_method: str = "percentile"  # util/runtime/int8.py CALIBRATION_METHODS


class Int8Drop(Exception):
    """The int8 model's test top-1 falls further below fp32's than the margin allows."""


class ExportMismatch(Exception):
    """ONNX Runtime's logits for the exported file differ from PyTorch's."""


def onnx_difference(onnx_bytes, model, x):
    """Max abs difference between ONNX Runtime (CPU) running `onnx_bytes` on `x` and `model(x)`, and the largest logit."""
    got = cpu_runner(onnx_bytes)(x)
    with torch.inference_mode():
        reference = model(x)
    if got.shape != reference.shape:
        raise ExportMismatch(f"ONNX Runtime returned logits of shape {tuple(got.shape)}, PyTorch {tuple(reference.shape)}")
    return (got - reference).abs().max().item(), reference.abs().max().item()


def with_labels(onnx_bytes, task, fold, images, extra=None):
    """The ONNX model with what serving needs beside the graph in its metadata: the task, the fold, whether it takes
    plain images, and the class names in logit order (JSON); `extra` adds more keys."""
    model = onnx.load_from_string(onnx_bytes)
    for key, value in {"task": task.name, "fold": str(fold), "input": "images" if images else "folded",
                       "class_names": json.dumps(task.label_names), **(extra or {})}.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def split_images(task, state, int8, split, group=1):
    """(images, labels) of the checkpoint's data `split` as float tensors (N, C, H, W) and (N,), in the order its run
    read them (its seed, and `group` images per input): a folded model's answer for an image depends on the images
    folded with it, so the test top-1 here is the one training reported."""
    source = task if task.family == USER else state.get("dataset", task.name)
    run = state.get("run") or {}
    data = load_splits(source, group, int8.data_dir, int8.data_root, seed=run.get("seed", 19), augment=False,
                       val_size=run.get("val_size", 5000))[split]
    samples = [data[i] for i in range(len(data))]
    return torch.stack([s[0] for s in samples]), torch.tensor([int(s[1]) for s in samples])


def run_images(run, images, group, folded, rows=1024):
    """(N, K) logits of `run` (util.runtime.onnx.cpu_runner) on `images`: folded into inputs of `group` images unless
    the model takes plain images (`folded` False); the last group padded by repeating the last image, its extra rows
    dropped."""
    n = images.shape[0]
    padded = torch.cat([images, images[-1:].expand((-n) % group, *images.shape[1:])])
    logits = []
    for start in range(0, padded.shape[0], rows * group):
        chunk = padded[start:start + rows * group]
        x = fold_input(chunk, group) if folded else chunk
        out = run(x)
        logits.append(unfold_output(out, group) if folded else out)
    return torch.cat(logits)[:n]


def quantized_and_checked(onnx_bytes, task, state, group, folded, int8, seed):
    """(int8 ONNX bytes, summary): `onnx_bytes` quantized on a seeded sample of the training images, then run beside
    the fp32 model on the test split; Int8Drop if its top-1 falls more than int8.max_drop points below fp32's."""
    train, _ = split_images(task, state, int8, "train", group)
    generator = torch.Generator().manual_seed(seed)
    sample = train[torch.randperm(train.shape[0], generator=generator)[:int8.calibration]]
    inputs = fold_input(sample[:whole_groups(sample.shape[0], group)], group) if folded else sample
    batch = CALIBRATION_BATCH if folded else whole_groups(CALIBRATION_BATCH, group)
    needed = batch * group if folded else batch
    check_calibration(inputs, batch, f"from {sample.shape[0]} training images; one batch takes {needed}: "
                                     f"--calibration {needed} or more")
    bits = weight_bits(int8.weight_bits)
    int8_bytes = quantize(onnx_bytes, inputs.numpy(), batch, bits, int8.calibration_method)
    test, labels = split_images(task, state, int8, "test", group)
    runs = {"fp32": (onnx_bytes, "onnxruntime"), "int8": (int8_bytes, "onnxruntime")}
    if backend_problem("openvino", torch.device("cpu"), "int8") is None:  # the int8 model's other runtime, if here
        runs["openvino int8"] = (int8_bytes, "openvino")
    top = {name: run_images(cpu_runner(model, runtime), test, group, folded).argmax(1)
           for name, (model, runtime) in runs.items()}
    top1 = {name: (t == labels).float().mean().item() for name, t in top.items()}
    summary = {"test_images": len(labels), "fp32_top1": top1["fp32"], "int8_top1": top1["int8"],
               "openvino_int8_top1": top1.get("openvino int8"),
               "agreement": (top["fp32"] == top["int8"]).float().mean().item(), "calibration_images": len(sample),
               "quantized_ops": quantized_ops(int8_bytes), "int8_instructions": int8_instructions(),
               "weight_bits": bits, "calibration_method": int8.calibration_method}
    worst = min((name for name in runs if name != "fp32"), key=top1.get)
    drop = 100 * (top1["fp32"] - top1[worst])
    if drop > int8.max_drop:
        runtime = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}[runs[worst][1]]
        raise Int8Drop(f"int8 top-1 on the {len(labels)} test images is {top1[worst]:.4f} under {runtime}, {drop:.1f} "
                       f"points below fp32's {top1['fp32']:.4f} (margin {int8.max_drop:g} points): nothing was "
                       "written; calibrate on more training images (--calibration N), loosen the margin (--max_drop "
                       "POINTS), or deploy fp32")
    return int8_bytes, summary


def export(checkpoint, out, images=False, seed=0, int8=None):
    """Export `checkpoint` to the ONNX file `out`, checked against PyTorch; returns a summary dict. With `int8`
    (an Int8), the file holds the int8 model, checked on the task's test split (quantized_and_checked).

    The file is written (crash-safely) only after ONNX Runtime's logits matched (and, for int8, its top-1 held);
    otherwise ExportMismatch (or Int8Drop) is raised and nothing is written.
    """
    classifier, state = load_classifier(checkpoint)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory; give a file name such as model.onnx")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: no directory {out.parent}; create it or choose another output path")
    args = state["model_args"]
    task, fold = task_of(args), args["fold"]
    c, hw = task.input_shape[0], tuple(task.input_shape[1:])
    if args.get("mode") == "efficientnet":  # one image per input, at the baseline's smaller resolution
        group, net_input = 1, (c, *classifier.hw)
    else:
        group, net_input = fold, (fold * c, *hw)
    model, per_input, multiple = (classifier, (c, *hw), group) if images else (classifier.net, net_input, 1)
    torch.manual_seed(seed)
    onnx_bytes = onnx_model(model, torch.rand(2 * multiple, *per_input), multiple)
    x = torch.rand(3 * multiple, *per_input)  # another batch size than the export's: the batch is dynamic
    error, scale = onnx_difference(onnx_bytes, model, x)
    tolerance = logits_tolerance(scale)
    if not error <= tolerance:  # also catches NaN
        raise ExportMismatch(f"ONNX Runtime's logits differ from PyTorch's by {error:.3g} (tolerance {tolerance:.3g}, "
                             f"largest logit {scale:.3g}); {out} was not written")
    int8_summary, extra = {}, {"dataset": state["dataset"]} if state.get("dataset") else {}
    if int8:
        onnx_bytes, int8_summary = quantized_and_checked(onnx_bytes, task, state, group, not images, int8, seed)
        extra.update({"precision": "int8", "weight_bits": str(int8_summary["weight_bits"]),
                      "calibration": f"{int8_summary['calibration_images']} training images, seed {seed}"})
    onnx_bytes = with_labels(onnx_bytes, task, fold, images, extra)
    try:
        write_atomic(out, lambda f: f.write(onnx_bytes))
    except OSError as e:
        if filesystem_failure(e):  # a full disk: the command's one line, exit 1
            raise
        raise ValueError(f"cannot write {out}: {e.strerror or e}; choose a writable output path") from None
    k = task.num_classes
    shapes = ((f"N x {c} x {hw[0]} x {hw[1]}" + (f" (N a multiple of {group})" if group > 1 else ""), f"N x {k}")
              if images else ("N x " + " x ".join(map(str, net_input)), f"N x {group * k}"))
    return {"task": task.name, "dataset": state.get("dataset"), "fold": fold, "multiplier": args["multiplier"],
            "input": shapes[0],
            "output": shapes[1], "max_abs_difference": error, "bytes": len(onnx_bytes), **int8_summary}
