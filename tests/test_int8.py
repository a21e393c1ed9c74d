"""int8 inference on the CPU: ONNX Runtime's static quantization in the sweep, in infer.py and in util/export.py."""
import csv
import importlib.util
import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import fold_trainer
from datasets.noscope import split_from_video
from datasets.synthetic import make_noscope_video
from helpers import run_cli, train_args
from models import build_model
from util.deploy import onnx as onnx_export
from util.runtime import int8
from util.measure.benchmark import Benchmark, Config
from util.core import device as device_module
from util.core.device import cpu_bf16_problem
from util.runtime.backends import backend_problem, default_backend
from util.runtime.onnx import onnx_model
from util.train.checkpoint import load_classifier, task_of

EXPORT = (sys.executable, "util/export.py")


@pytest.fixture(scope="module")
def coral(tmp_path_factory):
    """noscope-coral stand-in splits and a fold-2 run trained on them for 2 epochs: (data dir, best.pth)."""
    root = tmp_path_factory.mktemp("int8")
    video, labels = make_noscope_video("noscope-coral", root / "coral.mp4", root / "coral.csv", n_frames=1600)
    split_from_video("noscope-coral", root / "data" / "synthetic-noscope-coral-subset", labels, video)
    argv = ["--dataset", "synthetic-noscope-coral", "--fold", "2", "--savedir", str(root / "run"), "--epochs", "2",
            "--workers", "0", "--device", "cpu", "--data_dir", str(root / "data")]
    train_args(fold_trainer.get_args_parser().parse_args(argv))
    return root / "data", root / "run" / "best.pth"


def test_quantize_puts_the_convolutions_and_the_classifier_in_int8():
    torch.manual_seed(0)
    model, shape = build_model("sot/timer3", 4, "folded")
    fp32 = onnx_model(model.eval(), torch.rand(2, *shape))
    quantized = int8.quantize(fp32, np.random.default_rng(0).random((64, *shape), dtype=np.float32))
    ops = int8.quantized_ops(quantized)
    assert ops["Conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) and ops["Gemm"] >= 1
    weights = [i for i in onnx.load_from_string(quantized).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights, "the weights are stored in int8"
    x = np.random.default_rng(1).random((8, *shape), dtype=np.float32)
    got = onnxruntime.InferenceSession(quantized).run(None, {"x": x})[0]
    with torch.no_grad():
        wanted = model(torch.from_numpy(x)).numpy()
    assert got.shape == wanted.shape and np.abs(got - wanted).max() < 0.3 * np.abs(wanted).max()


def input_scale(int8_bytes):
    """The scale of the int8 model's first QuantizeLinear (its input's)."""
    graph = onnx.load_from_string(int8_bytes).graph
    first = next(node for node in graph.node if node.op_type == "QuantizeLinear")
    scale = next(i for i in graph.initializer if i.name == first.input[1])
    return float(onnx.numpy_helper.to_array(scale))


def test_percentile_calibration_keeps_one_outlier_from_widening_a_range():
    """An input range read off a sample with one huge value: minmax stretches it to the outlier (every other value
    then gets few of the 256 levels), the 99.999th percentile does not."""
    torch.manual_seed(0)
    model, shape = build_model("noscope-coral", 1, "original")
    fp32 = onnx_model(model.eval(), torch.rand(2, *shape))
    sample = np.random.default_rng(0).random((64, *shape), dtype=np.float32)
    sample[3, 0, 0, 0] = 1000.0
    minmax, percentile = (input_scale(int8.quantize(fp32, sample, method=m)) for m in ("minmax", "percentile"))
    assert minmax > 1000 / 255 * 0.99 and percentile < 0.1 * minmax
    with pytest.raises(ValueError, match="unknown calibration method 'entropy'; choose one of: percentile, minmax"):
        int8.quantize(fp32, sample, method="entropy")


def test_a_calibration_set_smaller_than_one_batch_is_refused():
    with pytest.raises(ValueError, match="needs at least 32 model inputs .one batch. and got 31"):
        int8.quantize(b"unused", np.zeros((31, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="and got 0"):
        int8.check_calibration(None)


def test_the_sweep_measures_int8_rows_and_the_report_says_how_they_were_calibrated(tmp_path):
    out = tmp_path / "q.csv"
    done = run_cli(sys.executable, "util/run_inference.py", out, "--quick", "--precision", "int8", "--models",
                   "noscope_coral", "--no_peak")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    backend = default_backend(torch.device("cpu"), "int8")
    assert [(r["Fold"], r["Backend"], r["Precision"]) for r in rows] == [("1", backend, "int8"), ("4", backend, "int8")]
    assert all(float(r["Throughput"]) > 0 for r in rows)
    report = run_cli(sys.executable, "util/inference_report.py", out)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "q-report" / "report.md").read_text()
    assert "calibrated on random inputs (standard normal)" in text and "int8 dot-product instructions" in text
    assert "per output channel in 7 or 8 bits" in text  # --no_peak: no machine record says which CPU ran it
    from util.inference_report import int8_note
    assert "in 8 bits" in int8_note({"cpu_features": {"avx512_vnni": True}})
    assert "in 7 bits" in int8_note({"cpu_features": {"avx2": True}}) and "no VNNI" in int8_note({"cpu_features": {"avx2": True}})


def test_int8_measured_beside_fp32_says_which_is_faster():
    done = run_cli(sys.executable, "infer.py", "noscope-coral", "--fold", "auto", "--folds", "1", "2", "--precision",
                   "int8", "--min_time", "0.05", "--chunk", "32")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("int8 f=") and " fp32 f=" in last
    assert sum(v in last for v in ("int8 is faster here", "int8 is slower than fp32", "int8 and fp32 tie")) == 1
    measured = [line for line in done.stdout.splitlines() if "precision=int8" in line]
    assert len(measured) == 2 * 5  # folds 1 and 2, five interleaved trials each (--fold auto's default)


def test_int8_where_it_cannot_run_is_a_one_line_error():
    done = run_cli(sys.executable, "infer.py", "sot/timer3", "--precision", "int8", "--backend", "eager")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "error: backend eager has no int8 here: use --backend onnxruntime or openvino for --precision int8")
    assert backend_problem("onnxruntime", torch.device("cuda"), "int8") == (
        "precision int8 runs on the CPU (ONNX Runtime's static quantization): use --device cpu, or --precision fp16 "
        "on CUDA")


@pytest.mark.parametrize("flags, openvino, backend", [("avx2 avx512f avx512_vnni", True, "openvino"),
                                                      ("avx2 amx_tile amx_int8", True, "openvino"),
                                                      ("avx2 avx512f avx512_vnni", False, "onnxruntime"),
                                                      ("avx2 fma", True, "onnxruntime")])
def test_int8_runs_on_openvino_where_the_cpu_has_vnni_and_it_is_installed(monkeypatch, flags, openvino, backend):
    """The measured default (util/runtime/backends.py): OpenVINO ran int8 faster than ONNX Runtime on a CPU with VNNI,
    and tied on one without; fp32 stays on ONNX Runtime everywhere."""
    monkeypatch.setattr(device_module, "_cpuinfo", lambda: f"model name\t: Test CPU\nflags\t\t: {flags}\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real("json") if openvino else None) if name == "openvino" else real(name, *a))
    assert default_backend(torch.device("cpu"), "int8") == backend
    assert default_backend(torch.device("cpu"), "fp32") == "onnxruntime"


def test_export_int8_checks_top1_on_the_test_split(coral, tmp_path, capsys):
    data, checkpoint = coral
    out = tmp_path / "coral_int8.onnx"
    export = onnx_export.export(checkpoint, out, int8=onnx_export.Int8(calibration=128, max_drop=100,
                                                                        data_dir=str(data)))
    classifier, state = load_classifier(checkpoint)
    images, labels = onnx_export.split_images(task_of(state["model_args"]), state, onnx_export.Int8(data_dir=str(data)),
                                              "test")
    assert len(labels) == export["test_images"] == len(list((data / "synthetic-noscope-coral-subset" / "test").rglob("*.png")))
    with torch.no_grad():  # PyTorch's fp32 top-1, the last group padded as the export pads it
        padded = torch.cat([images, images[-1:].expand((-len(images)) % 2, *images.shape[1:])])
        fp32 = (classifier(padded)[:len(labels)].argmax(1) == labels).float().mean().item()
    assert export["fp32_top1"] == pytest.approx(fp32)
    assert 0 <= export["int8_top1"] <= 1 and 0.9 <= export["agreement"] <= 1
    assert export["calibration_images"] == 128 and export["quantized_ops"]["Conv"] >= 2
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["precision"] == "int8" and meta["calibration"] == "128 training images, seed 0"
    assert meta["weight_bits"] == str(export["weight_bits"]) == str(int8.weight_bits())
    session = onnxruntime.InferenceSession(str(out))
    assert session.run(None, {"x": np.zeros((3, 6, 50, 50), np.float32)})[0].shape == (3, 4)


def test_export_int8_refuses_a_model_below_the_margin_and_writes_nothing(coral, tmp_path, monkeypatch):
    data, checkpoint = coral

    def zero_weights(onnx_bytes, inputs, batch, bits, method):  # a "quantized" model that answers class 0 for every image
        model = onnx.load_from_string(onnx_bytes)
        for tensor in [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]:
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(onnx.numpy_helper.to_array(tensor)), tensor.name))
        return model.SerializeToString()

    monkeypatch.setattr(onnx_export, "quantize", zero_weights)
    monkeypatch.setattr(onnx_export, "quantized_ops", lambda _: {})
    out = tmp_path / "bad.onnx"
    with pytest.raises(onnx_export.Int8Drop, match=r"points below fp32's .* \(margin 0.5 points\): nothing was written"):
        onnx_export.export(checkpoint, out, int8=onnx_export.Int8(calibration=128, data_dir=str(data)))
    assert not out.exists()


def test_export_int8_command_line(coral, tmp_path):
    data, checkpoint = coral
    done = run_cli(*EXPORT, checkpoint, tmp_path / "m.onnx", "--int8", "--calibration", "128", "--max_drop", "100",
                   "--data_dir", data, "--weight_bits", "7")
    assert done.returncode == 0, done.stderr
    assert "int8: calibrated on 128 training images (percentile); 7-bit weights; quantized Conv" in done.stdout
    assert "images: fp32 " in done.stdout and "this CPU's int8 instructions: " in done.stdout
    small = run_cli(*EXPORT, checkpoint, tmp_path / "s.onnx", "--int8", "--calibration", "40", "--data_dir", data)
    assert small.returncode == 2 and not (tmp_path / "s.onnx").exists()
    assert small.stderr.strip() == ("error: int8 calibration needs at least 32 model inputs (one batch) and got 20 "
                                    "(from 40 training images; one batch takes 64: --calibration 64 or more)")
    missing = run_cli(*EXPORT, checkpoint, tmp_path / "n.onnx", "--int8", "--data_dir", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no data at" in missing.stderr and len(missing.stderr.splitlines()) == 1
    loose = run_cli(*EXPORT, checkpoint, tmp_path / "l.onnx", "--max_drop", "1")
    assert loose.returncode == 2 and "--calibration, --calibration_method, --max_drop and --weight_bits set up --int8" in loose.stderr


def test_machine_records_name_the_int8_instructions(monkeypatch):
    monkeypatch.setattr(int8, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert int8.int8_instructions() == "avx512_vnni"
    monkeypatch.setattr(int8, "cpu_flags", lambda: {"avx2"})
    assert int8.int8_instructions().startswith("none (no VNNI")


def test_weights_take_7_bits_where_the_cpu_has_no_int8_dot_products(monkeypatch):
    monkeypatch.setattr(int8, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert int8.weight_bits() == 8 and int8.weight_bits(7) == 7
    monkeypatch.setattr(int8, "cpu_flags", lambda: {"avx2"})
    assert int8.weight_bits() == 7 and int8.weight_bits(8) == 8
    torch.manual_seed(0)
    model, shape = build_model("noscope-coral", 1, "folded")
    fp32 = onnx_model(model.eval(), torch.rand(2, *shape))
    calibration = np.random.default_rng(0).random((32, *shape), dtype=np.float32)
    largest = {}
    for bits in (7, 8):  # symmetric per-channel weights: the largest magnitude is 127 in 8 bits, 64 in 7 (-64..64)
        graph = onnx.load_from_string(int8.quantize(fp32, calibration, bits=bits)).graph
        weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
        largest[bits] = max(int(np.abs(w.astype(int)).max()) for w in weights)
    assert largest == {7: 64, 8: 127}


def test_an_int8_benchmark_reports_its_precision():
    bench = Benchmark(Config(task="sot/timer3", mode="folded", fold=2, batch_size=64, backend="auto", precision="int8",
                             device="cpu", chunk="full"))
    m = bench.trial()
    assert (m.backend, m.precision, m.images_per_sec > 0) == (default_backend(torch.device("cpu"), "int8"), "int8", True)
    assert json.loads(json.dumps(m.max_abs_error)) < 1


def test_the_int8_table_has_a_row_per_trained_run(coral, tmp_path):
    data, checkpoint = coral
    done = run_cli(sys.executable, "util/int8_table.py", checkpoint.parent.parent, "--calibration", "128",
                   "--data_dir", data, "--out", tmp_path / "int8")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "int8.csv").open()))
    assert [(r["dataset"], r["fold"], r["recipe"]) for r in rows] == [("synthetic-noscope-coral", "2", "paper")]
    row = rows[0]
    assert float(row["points"]) == pytest.approx(100 * (float(row["int8_top1"]) - float(row["fp32_top1"])), abs=0.06)
    trained = json.loads((checkpoint.parent / "result.json").read_text())  # the test images grouped as training did
    assert float(row["fp32_top1"]) == pytest.approx(trained["test_top1"], abs=1e-3)
    assert "Conv:" in row["quantized_ops"] and "int8 instructions: " in (tmp_path / "int8.md").read_text()
    empty = run_cli(sys.executable, "util/int8_table.py", tmp_path / "int8.csv")
    assert empty.returncode == 2 and "is not a directory: pass a train.py savedir" in empty.stderr


@pytest.mark.parametrize("int8_trials, verdict", [
    ([130, 140, 150], "int8 f=4 at 1.40x fp32 f=1 (range 1.30-1.50 over 3 trials) (140 vs 100 images/sec): int8 is "
                      "faster here"),
    ([80, 95, 90], "int8 f=4 at 0.90x fp32 f=1 (range 0.80-0.95 over 3 trials) (90 vs 100 images/sec): int8 is "
                   "slower than fp32 for this model here: deploy fp32"),
    ([95, 104, 110], "int8 f=4 at 1.04x fp32 f=1 (range 0.95-1.10 over 3 trials) (104 vs 100 images/sec): int8 and "
                     "fp32 tie within the trials' spread"),
])
def test_the_precision_verdict_reads_the_interleaved_trials(int8_trials, verdict):
    from util.measure.compare import precision_verdict
    trials = {("int8", 1): [50, 50, 50], ("int8", 4): int8_trials, ("fp32", 1): [100, 100, 100],
              ("fp32", 4): [60, 60, 60]}
    assert precision_verdict(trials).startswith(verdict)
    tied = {**trials, ("int8", 4): [48, 52, 55]}  # int8 f=4 ties with int8 f=1: its smaller fold is the one compared
    assert precision_verdict(tied).startswith("int8 f=1 at 0.50x fp32 f=1 (range 0.50-0.50 over 3 trials)")


def test_the_int8_check_groups_the_test_images_as_training_did(coral):
    from datasets import load_splits
    data, checkpoint = coral
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    settings = onnx_export.Int8(data_dir=str(data))
    _, labels = onnx_export.split_images(task_of(state["model_args"]), state, settings, "test", group=2)
    trained = load_splits("synthetic-noscope-coral", 2, data, seed=state["run"]["seed"], augment=False)["test"]
    plain = load_splits("synthetic-noscope-coral", 1, data, seed=state["run"]["seed"], augment=False)["test"]
    order = [int(trained[i][1]) for i in range(len(trained))]
    assert labels.tolist() == order != [int(plain[i][1]) for i in range(len(plain))]  # folded runs shuffle their splits


HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is optional here: pip install openvino")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_runs_the_same_onnx_model_as_onnx_runtime(precision):
    """OpenVINO and ONNX Runtime run the same export (and the same int8 model): fp32 logits agree to rounding, int8
    ones to quantization's error, and both pass the check against eager PyTorch."""
    config = dict(task="sot/timer3", fold=4, batch_size=64, precision=precision, device="cpu", chunk="full")
    ov, ort = (Benchmark(Config(**config, backend=b), warmup=0) for b in ("openvino", "onnxruntime"))
    assert ov.trial(0).backend == "openvino" and ov.trial(0).images_per_sec > 0
    with torch.inference_mode():
        a, b = ov.run(ov.x), ort.run(ort.x)
    assert a.shape == b.shape and a.shape[0] == 64 // 4  # one row per folded input
    tolerance = 1e-4 if precision == "fp32" else 0.05 * b.abs().max().item()
    assert (a - b).abs().max().item() <= tolerance


def test_openvino_where_it_cannot_run_says_why(monkeypatch):
    cpu = torch.device("cpu")
    assert "runs on the CPU here" in backend_problem("openvino", torch.device("cuda"), "fp32")
    if cpu_bf16_problem() is None:  # bf16 goes to PyTorch's backends
        assert "runs fp32 only on the CPU; for --precision bf16 use --backend compile" in backend_problem(
            "openvino", cpu, "bf16")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert backend_problem("openvino", cpu, "int8") == ("backend openvino needs OpenVINO: pip install openvino, or "
                                                         "pick another --backend")
