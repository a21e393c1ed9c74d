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
CIFAR's mean and std for the CIFAR tasks; for your own model (train.py --model_file) its C channels (grayscale
or RGB) at its H x W, and the checkpoint rebuilds it by running its model file. Class i of the logits is the i-th
class folder, sorted. The file's metadata holds the task, fold, input kind and the class names in logit order
(`class_names`, JSON; ONNX Runtime: session.get_modelmeta().custom_metadata_map). After exporting, ONNX Runtime runs the file on a random
batch of a size other than the export's; its logits must match PyTorch's (tolerance 1e-4 + 1e-3 x
the largest logit), else the file is not written and the exit status is 1.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a command: make the repository importable

from util.deploy.onnx import ExportMismatch, export  # noqa: E402


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
