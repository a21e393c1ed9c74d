"""Export a trained FoldedCNN checkpoint to ONNX, for ONNX Runtime, TensorRT or Triton.

Usage: python3 util/export.py CHECKPOINT model.onnx [--images]

CHECKPOINT is a `best.pth` or `current.pth` written by fold_trainer.py (or its run directory, which
means its `best.pth`); the task, fold f and multiplier are read from it. The batch dimension of the
exported graph is dynamic. Input `x`, output `logits`:

  default     the FoldedCNN itself: x is (N, f*C, H, W) folded inputs (f images concatenated along
              the channels, image-major), logits are (N, f*K); logits[n, i*K:(i+1)*K] belong to
              image i of input n. Fold and unfold in the serving code (a plain reshape of
              contiguous tensors each way).
  --images    the network wrapped with its folding: x is (N, C, H, W) plain images with N a
              multiple of f, logits are (N, K), row i for image i. A batch that is not a multiple of
              f fails in the Reshape node: pad it (e.g. repeat the last image) and drop the extra rows.

Inputs are what training fed the model: RGB images as floats in [0, 1] (ToTensor), normalised with
CIFAR's mean and std for the CIFAR tasks. After exporting, ONNX Runtime runs the file on a random
batch of a size other than the export's; its logits must match PyTorch's (tolerance 1e-4 + 1e-3 x
the largest logit), else the file is not written and the exit status is 1.
"""
import argparse
import contextlib
import io
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from config.tasks import get_task
from models import build_classifier
from models.fold import check_fold, check_multiplier
from util.common import read_torch_file, write_atomic

CHECKPOINT_KEYS = ("task", "fold", "multiplier", "model")
# fold_trainer.py checkpoints hold NumPy's RNG state; these are the only non-torch globals they need,
# so checkpoints load with weights_only=True (no arbitrary code runs while unpickling).
NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]


class ExportMismatch(Exception):
    """ONNX Runtime's logits for the exported file differ from PyTorch's."""


def checkpoint_path(path):
    """`path`, or `path/best.pth` when it is a run directory."""
    path = Path(path)
    return path / "best.pth" if path.is_dir() else path


def load_checkpoint(path, device="cpu"):
    """`(classifier, state)` from a fold_trainer.py checkpoint: the FoldedClassifier in eval mode, on `device`.

    `state` is the checkpoint dict (task, fold, multiplier, dataset, epoch, ...). A ValueError with
    one line saying why if the file is missing, unreadable, or not a FoldedCNN checkpoint of this
    repository.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file; pass a best.pth or current.pth written by fold_trainer.py")
    with torch.serialization.safe_globals(NUMPY_GLOBALS):
        state = read_torch_file(path, "checkpoint", "pass a best.pth or current.pth written by fold_trainer.py",
                                weights_only=True)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a FoldedCNN checkpoint of this repository (it lacks {', '.join(missing)}); "
                         "pass a best.pth or current.pth written by fold_trainer.py")
    try:
        task = get_task(state["task"])
        fold = check_fold(state["fold"])
        multiplier = check_multiplier(state["multiplier"], fold)
    except ValueError as e:
        raise ValueError(f"checkpoint {path}: {e}") from None
    classifier = build_classifier(task, fold, multiplier)
    try:
        classifier.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        reason = str(e).strip().splitlines()[-1].strip()
        raise ValueError(f"checkpoint {path}: its weights do not fit {task.name}'s FoldedCNN at fold {fold} "
                         f"(multiplier {multiplier:g}): {reason}") from None
    return classifier.to(device).eval(), state


def onnx_model(model, example, batch_multiple=1):
    """`model` exported to ONNX (bytes) with a dynamic batch dimension.

    The batch dimension is named `batch`; with `batch_multiple` m > 1 it is declared as m x `groups`
    (for a model that only takes batches that are multiples of m, such as a FoldedClassifier).
    """
    batch = torch.export.Dim("batch") if batch_multiple == 1 else batch_multiple * torch.export.Dim("groups")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["x"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto.SerializeToString()


def onnx_difference(onnx_bytes, model, x):
    """Max abs difference between ONNX Runtime (CPU) running `onnx_bytes` on `x` and `model(x)`, and the largest logit."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.inference_mode():
        reference = model(x)
    if got.shape != reference.shape:
        raise ExportMismatch(f"ONNX Runtime returned logits of shape {tuple(got.shape)}, PyTorch {tuple(reference.shape)}")
    return (got - reference).abs().max().item(), reference.abs().max().item()


def export(checkpoint, out, images=False, seed=0):
    """Export `checkpoint` to the ONNX file `out`, checked against PyTorch; returns a summary dict.

    The file is written (crash-safely) only after ONNX Runtime's logits matched; otherwise
    ExportMismatch is raised and nothing is written.
    """
    classifier, state = load_checkpoint(checkpoint)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory; give a file name such as model.onnx")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: no directory {out.parent}; create it or choose another output path")
    task, fold = get_task(state["task"]), state["fold"]
    c, hw = task.input_shape[0], tuple(task.input_shape[1:])
    model, per_input, multiple = (classifier, (c, *hw), fold) if images else (classifier.net, (fold * c, *hw), 1)
    torch.manual_seed(seed)
    onnx_bytes = onnx_model(model, torch.rand(2 * multiple, *per_input), multiple)
    x = torch.rand(3 * multiple, *per_input)  # another batch size than the export's: the batch is dynamic
    error, scale = onnx_difference(onnx_bytes, model, x)
    tolerance = 1e-4 + 1e-3 * scale
    if not error <= tolerance:  # also catches NaN
        raise ExportMismatch(f"ONNX Runtime's logits differ from PyTorch's by {error:.3g} (tolerance {tolerance:.3g}, "
                             f"largest logit {scale:.3g}); {out} was not written")
    try:
        write_atomic(out, lambda f: f.write(onnx_bytes))
    except OSError as e:
        raise ValueError(f"cannot write {out}: {e.strerror or e}; choose a writable output path") from None
    k = task.num_classes
    shapes = ((f"N x {c} x {hw[0]} x {hw[1]} (N a multiple of {fold})", f"N x {k}") if images else
              (f"N x {fold * c} x {hw[0]} x {hw[1]}", f"N x {fold * k}"))
    return {"task": task.name, "fold": fold, "multiplier": state["multiplier"], "input": shapes[0],
            "output": shapes[1], "max_abs_difference": error, "bytes": len(onnx_bytes)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="best.pth or current.pth written by fold_trainer.py, or its run directory (best.pth)")
    parser.add_argument("out", metavar="OUT", help="the ONNX file to write, e.g. model.onnx")
    parser.add_argument("--images", action="store_true",
                        help="export the folding wrapper: plain (N, C, H, W) images in, (N, K) logits out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random check batch (default 0)")
    args = parser.parse_args(argv)
    try:
        summary = export(args.checkpoint, args.out, args.images, args.seed)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    except ExportMismatch as e:
        parser.exit(1, f"error: {e}\n")
    print(f"wrote {args.out}: {summary['task']} fold {summary['fold']}, input x: {summary['input']}, "
          f"output logits: {summary['output']}")
    print(f"ONNX Runtime vs PyTorch: max abs difference {summary['max_abs_difference']:.3g}")


if __name__ == "__main__":
    main()
