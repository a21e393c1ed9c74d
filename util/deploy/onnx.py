"""ONNX export of a trained FoldedCNN checkpoint, checked against PyTorch before the file is written.

Input `x`, output `logits`, the batch dimension dynamic:
  default  the FoldedCNN itself: x is (N, f*C, H, W) folded inputs (f images concatenated along the
           channels, image-major), logits are (N, f*K); logits[n, i*K:(i+1)*K] belong to image i of
           input n.
  images   the network wrapped with its folding: x is (N, C, H, W) plain images with N a multiple of
           f, logits are (N, K), row i for image i.
"""
import json
from pathlib import Path

import onnx
import torch

from util.train.checkpoint import load_classifier, task_of
from util.core.files import write_atomic
from util.measure.benchmark import logits_tolerance, onnx_model, ort_session


class ExportMismatch(Exception):
    """ONNX Runtime's logits for the exported file differ from PyTorch's."""


def onnx_difference(onnx_bytes, model, x):
    """Max abs difference between ONNX Runtime (CPU) running `onnx_bytes` on `x` and `model(x)`, and the largest logit."""
    got = torch.from_numpy(ort_session(onnx_bytes).run(None, {"x": x.numpy()})[0])
    with torch.inference_mode():
        reference = model(x)
    if got.shape != reference.shape:
        raise ExportMismatch(f"ONNX Runtime returned logits of shape {tuple(got.shape)}, PyTorch {tuple(reference.shape)}")
    return (got - reference).abs().max().item(), reference.abs().max().item()


def with_labels(onnx_bytes, task, fold, images):
    """The ONNX model with what serving needs beside the graph in its metadata: the task, the fold, whether it takes
    plain images, and the class names in logit order (JSON)."""
    model = onnx.load_from_string(onnx_bytes)
    for key, value in {"task": task.name, "fold": str(fold), "input": "images" if images else "folded",
                       "class_names": json.dumps(task.label_names)}.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def export(checkpoint, out, images=False, seed=0):
    """Export `checkpoint` to the ONNX file `out`, checked against PyTorch; returns a summary dict.

    The file is written (crash-safely) only after ONNX Runtime's logits matched; otherwise
    ExportMismatch is raised and nothing is written.
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
    onnx_bytes = with_labels(onnx_bytes, task, fold, images)
    try:
        write_atomic(out, lambda f: f.write(onnx_bytes))
    except OSError as e:
        raise ValueError(f"cannot write {out}: {e.strerror or e}; choose a writable output path") from None
    k = task.num_classes
    shapes = ((f"N x {c} x {hw[0]} x {hw[1]}" + (f" (N a multiple of {group})" if group > 1 else ""), f"N x {k}")
              if images else ("N x " + " x ".join(map(str, net_input)), f"N x {group * k}"))
    return {"task": task.name, "fold": fold, "multiplier": args["multiplier"], "input": shapes[0],
            "output": shapes[1], "max_abs_difference": error, "bytes": len(onnx_bytes)}
