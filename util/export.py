"""Export a trained FoldedCNN checkpoint to ONNX, for ONNX Runtime, TensorRT or Triton.

Usage: python3 util/export.py CHECKPOINT model.onnx [--images] [--int8]

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

--int8 writes the model quantized to int8 for ONNX Runtime on a CPU (static quantization, QDQ: int8 weights per
output channel, uint8 activations per tensor; util/runtime/int8.py), calibrated on a seeded sample of the task's
training images (--calibration, default 512), then checks it on the task's test split: it prints the test top-1 of
fp32 and int8 and how often their answers agree. An int8 model whose top-1 falls more than --max_drop points
(default 0.5) below fp32's is not written (exit status 1). The data are read as the trainer reads them (--data_dir,
--data_root; your own CNN's from its --data folder).
"""
import argparse

from datasets import DATA_DIR, DataMissing
from config.tasks import stand_in_note, trained_on
from util.core.cli import float_between, positive_int, run_command
from util.deploy.onnx import ExportMismatch, Int8, Int8Drop, export
from util.runtime.int8 import CALIBRATION_METHODS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="best.pth or current.pth written by fold_trainer.py, or its run directory (best.pth)")
    parser.add_argument("out", metavar="OUT", help="the ONNX file to write, e.g. model.onnx")
    parser.add_argument("--images", action="store_true",
                        help="export the folding wrapper: plain (N, C, H, W) images in, (N, K) logits out")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random check batch and of the calibration sample (default 0)")
    int8 = parser.add_argument_group("int8 (ONNX Runtime on a CPU)")
    int8.add_argument("--int8", action="store_true", help="write the model quantized to int8, checked on the test split")
    int8.add_argument("--calibration", type=positive_int, default=None, metavar="IMAGES",
                      help="training images to calibrate on (default 512)")
    int8.add_argument("--max_drop", type=float_between(0), default=None, metavar="POINTS",
                      help="the most int8's test top-1 may fall below fp32's, in points (default 0.5)")
    int8.add_argument("--weight_bits", type=int, choices=(7, 8), default=None,
                      help="bits of the int8 weights (default: 8 where this CPU has VNNI or AMX, 7 where it has not, "
                           "since AVX2's int8 kernels saturate with 8-bit weights: an 8-bit file loses accuracy on "
                           "a CPU without VNNI)")
    int8.add_argument("--calibration_method", choices=CALIBRATION_METHODS, default=None,
                      help="how the activations' ranges are read off the calibration images: percentile (default; "
                           "their 99.999th percentile) or minmax")
    int8.add_argument("--data_dir", default=str(DATA_DIR), help="folder of CIFAR and NoScope data (default data/)")
    int8.add_argument("--data_root", default=None, help="folder of the game data (default $DATA_ROOT, then data_root/)")
    args = parser.parse_args(argv)
    if not args.int8 and (args.calibration or args.max_drop is not None or args.weight_bits or args.calibration_method):
        parser.error("--calibration, --calibration_method, --max_drop and --weight_bits set up --int8: add --int8, or "
                     "drop them")
    settings = None
    if args.int8:
        settings = Int8(args.calibration or Int8.calibration, Int8.max_drop if args.max_drop is None else args.max_drop,
                        args.data_dir, args.data_root, args.weight_bits,
                        args.calibration_method or Int8.calibration_method)
    try:
        summary = export(args.checkpoint, args.out, args.images, args.seed, settings)
    except (ValueError, DataMissing) as e:
        parser.exit(2, f"error: {e}\n")
    except (ExportMismatch, Int8Drop) as e:
        parser.exit(1, f"error: {e}\n")
    print(f"wrote {args.out}: {summary['task']} fold {summary['fold']} {trained_on(summary['dataset'])}, "
          f"input x: {summary['input']}, output logits: {summary['output']}")
    print(f"ONNX Runtime vs PyTorch: max abs difference {summary['max_abs_difference']:.3g}")
    if args.int8:
        ops = ", ".join(f"{op} {n}" for op, n in summary["quantized_ops"].items())
        print(f"int8: calibrated on {summary['calibration_images']} training images ({summary['calibration_method']}); "
              f"{summary['weight_bits']}-bit "
              f"weights; quantized {ops}; test top-1 "
              f"on {summary['test_images']} images: fp32 {summary['fp32_top1']:.4f}, int8 {summary['int8_top1']:.4f} "
              f"({100 * (summary['int8_top1'] - summary['fp32_top1']):+.1f} points), answers agree on "
              f"{summary['agreement']:.4f}"
              + (f"; int8 under OpenVINO {summary['openvino_int8_top1']:.4f}" if summary["openvino_int8_top1"] is not None
                 else "")
              + f"; this CPU's int8 instructions: {summary['int8_instructions']}")
    note = stand_in_note(summary["dataset"], summary["task"])
    if note:
        print(note)


if __name__ == "__main__":
    run_command(main)
