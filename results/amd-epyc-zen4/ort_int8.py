"""ONNX Runtime static int8 quantization of the original and folded CNNs, against ONNX Runtime fp32, on this CPU.

Run from the repository root: `python3 results/amd-epyc-zen4/ort_int8.py --out results/amd-epyc-zen4/ort_int8.md`.
Weights are the models' fresh initialisation and inputs random images (no trained checkpoints are in the
repository), so "agreement" (the share of images whose top-1 class is the same under int8 and fp32) is a
first check of how much int8 changes the answers, not an accuracy measurement. Calibration: 8 batches of
random inputs. Throughput: the CPU protocol (whole 1024-image batch in the chunk that runs fastest, median of
3 interleaved trials of at least 1 s).
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a command: make the repository importable

import numpy as np  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402

from models import build_model, mode_of  # noqa: E402
from util.core.device import cpu_name  # noqa: E402
from util.measure.benchmark import chunked, onnx_model, ort_session, time_calls, tune_chunk  # noqa: E402


class Random(CalibrationDataReader):
    def __init__(self, shape, batches=8, rows=32):
        self.batches = iter([{"x": np.random.rand(rows, *shape).astype(np.float32)} for _ in range(batches)])

    def get_next(self):
        return next(self.batches, None)


def runner(session):
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def measure(task, fold, trials, min_time):
    torch.manual_seed(0)
    model, shape = build_model(task, fold, mode_of(fold))
    model.eval()
    x = torch.rand(1024 // fold, *shape)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32_path.write_bytes(onnx_model(model, x[:2]))
        quantize_static(str(fp32_path), str(int8_path), Random(shape), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        runs = {name: runner(ort_session(path.read_bytes())) for name, path in (("fp32", fp32_path), ("int8", int8_path))}
        runs = {name: chunked(run, tune_chunk(run, x, torch.device("cpu"))) for name, run in runs.items()}
        k = model(x[:1]).shape[1] // fold  # a FoldedCNN emits f x K logits per input
        top = {name: run(x).reshape(-1, k).argmax(1) for name, run in runs.items()}
        speeds = {name: [] for name in runs}
        for _ in range(trials):
            for name, run in runs.items():
                speeds[name].append(1024 // fold * fold * time_calls(lambda: run(x), torch.device("cpu"), 1, min_time))
    return ({name: statistics.median(v) for name, v in speeds.items()},
            (top["fp32"] == top["int8"]).float().mean().item())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["noscope-coral", "lol/goldnumber-fraction", "sot/timer3"])
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--min_time", type=float, default=1.0)
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args(argv)
    lines = [f"ONNX Runtime int8 (static, QDQ, per-channel) vs fp32, images/sec, batch 1024; {cpu_name()}, "
             f"{torch.get_num_threads()} threads; median of {args.trials} interleaved trials.", "",
             "| Task | f | fp32 | int8 | int8 / fp32 | top-1 agreement |", "|---|---:|---:|---:|---:|---:|"]
    for task in args.tasks:
        for fold in args.folds:
            speed, agree = measure(task, fold, args.trials, args.min_time)
            lines.append(f"| {task} | {fold} | {speed['fp32']:,.0f} | {speed['int8']:,.0f} | "
                         f"{speed['int8'] / speed['fp32']:.2f}x | {agree:.3f} |")
            print(lines[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
