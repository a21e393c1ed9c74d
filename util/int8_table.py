"""Accuracy of int8 against fp32 for every trained run of a savedir: the int8 table of results/accuracy/.

    python3 util/int8_table.py SAVEDIR --out results/accuracy/int8 [--data_dir D] [--data_root R]

Each finished run's best.pth is quantized as `util/export.py CHECKPOINT out.onnx --int8` quantizes it (ONNX Runtime,
static, calibrated on --calibration training images, seed 0) and both models run on the task's test split. One row
per run: test top-1 of fp32 and int8 under ONNX Runtime, int8 minus fp32 in points, how often their answers agree,
the same int8 model's top-1 under OpenVINO (where it is installed: the int8 default on CPUs with VNNI), and which
operators ran in int8. Nothing is refused here (the table shows every drop); the CPU and its int8
instructions head the table (the int8 answers can differ between CPUs with and without VNNI).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from datasets import DATA_DIR, DataMissing
from util.core.cli import add_out_arg, markdown_table, one_line_errors, out_paths, positive_int, run_command
from util.core.device import cpu_name
from util.core.files import write_text_atomic
from util.runtime.int8 import CALIBRATION_METHODS, int8_instructions
from util.deploy.onnx import Int8, export

COLUMNS = ["dataset", "fold", "recipe", "fp32_top1", "int8_top1", "points", "agreement", "openvino_int8_top1",
           "openvino_points", "weight_bits", "quantized_ops"]


def finished_runs(savedir):
    """(result.json contents, run directory) of every finished run under `savedir` with a best.pth, sorted."""
    for path in sorted(Path(savedir).rglob("result.json")):
        if (path.parent / "best.pth").exists():
            yield json.loads(path.read_text()), path.parent


def signed_points(top1, fp32_top1):
    """int8 minus fp32 test top-1 in points, signed: '+0.0', '-0.6'."""
    return f"{100 * (top1 - fp32_top1):+.1f}"


def table_rows(savedir, settings):
    """One row (COLUMNS) per finished run, its int8 model checked on its test split."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for result, run in finished_runs(savedir):
            summary = export(run / "best.pth", Path(tmp) / "model.onnx", int8=settings)
            ops = " ".join(f"{op}:{n}" for op, n in summary["quantized_ops"].items())
            openvino = summary["openvino_int8_top1"]
            rows.append([result["dataset"], result["fold"], result["recipe"], f"{summary['fp32_top1']:.4f}",
                         f"{summary['int8_top1']:.4f}", signed_points(summary["int8_top1"], summary["fp32_top1"]),
                         f"{summary['agreement']:.4f}", "-" if openvino is None else f"{openvino:.4f}",
                         "-" if openvino is None else signed_points(openvino, summary["fp32_top1"]), summary["weight_bits"], ops])
            print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="a train.py savedir (every finished run with a best.pth)")
    parser.add_argument("--calibration", type=positive_int, default=Int8.calibration,
                        help=f"training images to calibrate on (default {Int8.calibration})")
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="folder of CIFAR and NoScope data (default data/)")
    parser.add_argument("--data_root", default=None, help="folder of the game data (default $DATA_ROOT, then data_root/)")
    parser.add_argument("--weight_bits", type=int, choices=(7, 8), default=None,
                        help="bits of the int8 weights (default: 8 where this CPU has VNNI or AMX, 7 where it has not)")
    parser.add_argument("--calibration_method", choices=CALIBRATION_METHODS, default=Int8.calibration_method,
                        help=f"how the activations' ranges are read off the calibration images (default "
                             f"{Int8.calibration_method})")
    add_out_arg(parser, ("md", "csv"))
    args = parser.parse_args(argv)
    settings = Int8(args.calibration, float("inf"), args.data_dir, args.data_root, args.weight_bits,
                    args.calibration_method)
    with one_line_errors(parser, (ValueError, DataMissing)):
        if not Path(args.savedir).is_dir():
            raise ValueError(f"{args.savedir} is not a directory: pass a train.py savedir")
        rows = table_rows(args.savedir, settings)
        if not rows:
            raise ValueError(f"{args.savedir} holds no finished run with a best.pth: train first (python3 train.py "
                             f"{args.savedir} ...)")
    command = "python3 util/int8_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# int8 against fp32 on the test splits ({cpu_name()}; int8 instructions: {int8_instructions()})", "",
             f"Command: `{command}`. ONNX Runtime, static quantization (QDQ, per-channel int8 weights in "
             f"`weight_bits` bits, uint8 activations), calibrated on {args.calibration} training images (seed 0, "
             f"{args.calibration_method} ranges); "
             "points = int8 minus fp32 test top-1; agreement = the share of test images given the same class by both; "
             "openvino = the same int8 model run by OpenVINO ('-': not installed).", "",
             *markdown_table(COLUMNS, rows)]
    print("\n".join(lines))
    if args.out:
        paths = out_paths(args.out, ("md", "csv"))
        write_text_atomic(paths["md"], "\n".join(lines) + "\n")
        write_text_atomic(paths["csv"], "\n".join(",".join(map(str, r)) for r in [COLUMNS] + rows) + "\n")


if __name__ == "__main__":
    run_command(main)
