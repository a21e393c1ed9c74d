"""Inference: infer.py's backends and checks, the run_inference.sh sweep, the report and the peak probe."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO, run_cli
from models.flops import flops_per_image
from util.core import device as common
from util.runtime import backends as runtime
from util.core.device import cpu_bf16_problem
from util.measure import benchmark
from util.measure.benchmark import Benchmark, Config
from util.runtime.backends import BackendError, available_backends
from util.measure.results_csv import HEADER

CPU_BACKENDS = available_backends("cpu")
SMALL = dict(task="noscope-coral", mode="folded", fold=2, batch_size=16, device="cpu")


def test_cpu_backends_here():
    """What CI relies on: eager and onnxruntime always, compile with a C++ compiler; tensorrt never on the CPU."""
    assert CPU_BACKENDS[0] == runtime.DEFAULT_BACKEND["cpu"] == "onnxruntime"
    assert "eager" in CPU_BACKENDS and "tensorrt" not in CPU_BACKENDS and "cudagraph" not in CPU_BACKENDS


@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_backend_matches_eager_and_reports_throughput(backend):
    bench = Benchmark(Config(**SMALL, backend=backend, chunk="4"), warmup=1)
    result = bench.trial(0, iters=2)
    assert result.backend == backend and result.chunk == 4
    assert result.images_per_sec > 0
    assert result.flops_per_sec == pytest.approx(result.images_per_sec * flops_per_image("noscope-coral", "folded", 2))
    # The backend's logits for a fresh batch equal eager PyTorch's (not only those of the checked batch).
    x = torch.randn_like(bench.x)
    with torch.inference_mode():
        assert torch.allclose(bench.run(x).float(), bench.reference(x.float().contiguous()), atol=1e-4, rtol=1e-3)


BF16_HERE = cpu_bf16_problem() is None


@pytest.mark.parametrize("flags, fast", [("fpu sse2 avx2 fma", False), ("avx2 avx512f avx512_bf16", True),
                                         ("avx512f amx_tile amx_bf16 amx_int8", True)])
def test_bf16_on_the_cpu_needs_bf16_instructions(monkeypatch, flags, fast):
    """bf16 is offered exactly where the CPU has native bf16 (AVX-512 BF16 or AMX); elsewhere a one-line reason."""
    monkeypatch.setattr(common, "_cpuinfo", lambda: f"model name\t: Test CPU\nflags\t\t: {flags}\n")
    assert common.cpu_features()["avx2"] == ("avx2" in flags)
    problem = runtime.backend_problem("eager", torch.device("cpu"), "bf16")
    onnxruntime = runtime.backend_problem("onnxruntime", torch.device("cpu"), "bf16")
    if fast:
        assert problem is None and available_backends("cpu", "bf16")[-1] == "eager"
        assert "runs fp32 only on the CPU; for --precision bf16 use --backend compile or eager" in onnxruntime
    else:
        assert "needs bf16 instructions (amx_bf16 or avx512_bf16), which this CPU (Test CPU) lacks" in problem
        assert available_backends("cpu", "bf16") == [] and onnxruntime == problem


@pytest.mark.skipif(not BF16_HERE, reason="this CPU has no bf16 instructions")
@pytest.mark.parametrize("backend", available_backends("cpu", "bf16"))
def test_bf16_on_the_cpu_matches_fp32_within_its_tolerance(backend):
    bench = Benchmark(Config(**SMALL, backend=backend, precision="bf16"), warmup=1)
    result = bench.trial(0)
    assert bench.x.dtype == torch.bfloat16 and result.precision == "bf16" and result.images_per_sec > 0
    assert 0 < result.max_abs_error <= runtime.logits_tolerance(1.0, "bf16")  # rounded, yet close to fp32


def test_bf16_on_the_cpu_from_the_command_line():
    result = run_cli(sys.executable, "infer.py", "noscope-coral", "--fold", "2", "--batch_size", "8",
                     "--precision", "bf16", "--device", "cpu", "--min_time", "0")
    if BF16_HERE:
        assert result.returncode == 0, result.stderr
        assert "precision=bf16" in result.stdout and "backend=compile" in result.stdout
    else:
        assert result.returncode == 2 and "needs bf16 instructions" in result.stderr
    result = run_cli(sys.executable, "infer.py", "noscope-coral", "--precision", "bf16", "--backend", "onnxruntime",
                     "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("fp32 only on the CPU" if BF16_HERE else "needs bf16 instructions") in result.stderr


def test_a_wrong_backend_cannot_report_a_number(monkeypatch):
    real = runtime.make_runner

    def off_by_a_little(*args):
        run = real(*args)
        return lambda x: run(x) + 0.01
    monkeypatch.setattr(benchmark, "make_runner", off_by_a_little)
    with pytest.raises(BackendError, match="differ from eager PyTorch"):
        Benchmark(Config(**SMALL, backend="onnxruntime"), warmup=0)


def test_folded_batch_counts_images():
    bench = Benchmark(Config(task="lol/timer-minutes", mode="folded", fold=3, batch_size=10, device="cpu",
                             backend="eager"), warmup=0)
    assert bench.x.shape[0] == 3 and bench.images == 9  # 10 // 3 folded inputs of 3 images each
    assert bench.x.shape[1] == 9  # 3 colour channels x 3 images


def test_cli_line_and_json():
    result = run_cli(sys.executable, "infer.py", "apex/squad_count_v2", "--mode", "original", "--batch_size", "8",
                     "--device", "cpu", "--backend", "eager", "--trials", "2", "--min_time", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    fields = dict(item.split("=", 1) for item in lines[1].split())
    assert fields["model"] == "apex/squad_count_v2" and fields["trial"] == "1" and float(fields["images_per_sec"]) > 0
    result = run_cli(sys.executable, "infer.py", "noscope-night", "--fold", "4", "--batch_size", "8",
                     "--device", "cpu", "--json", "--min_time", "0")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "noscope_night" and record["backend"] == "onnxruntime" and record["images_per_sec"] > 0


@pytest.mark.parametrize("args, message", [
    (["--backend", "tensorrt", "--device", "cpu"], "backend tensorrt runs on CUDA only"),
    (["--backend", "cudagraph", "--device", "cpu"], "backend cudagraph runs on CUDA only"),
    (["--precision", "fp16", "--device", "cpu"], "precision fp16 needs CUDA"),
    (["--fold", "4", "--batch_size", "2", "--device", "cpu"], "batch size 2 is smaller than the fold 4"),
    (["--mode", "efficientnet"], "exists only for game tasks"),
    (["--backend", "cuda-magic"], "invalid choice"),
    (["--compile_mode", "fastest"], "invalid choice"),
])
def test_cli_errors(args, message):
    result = run_cli(sys.executable, "infer.py", "noscope-coral", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error():
    result = run_cli(sys.executable, "infer.py", "noscope-coral", "--device", "cuda")
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


def read_csv(path):
    text = path.read_text()
    assert text.endswith("\n"), "the CSV ends in a partial line"
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == HEADER
    assert all(len(row) == len(HEADER) for row in rows), "a row has the wrong number of fields"
    return rows[1:]


@pytest.mark.slow
def test_quick_sweep_on_one_model(tmp_path):
    out = tmp_path / "results.csv"
    result = run_cli("./run_inference.sh", out, "--quick", "--models", "noscope-coral", "--batch_sizes", "64",
                     "--device", "cpu", "--no_peak")
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("noscope_coral", "0", "1", "64", "Original"), ("noscope_coral", "0", "4", "64", "Folded")]
    for row in rows:
        assert float(row[5]) > 0
        mode, fold = ("original", 1) if row[4] == "Original" else ("folded", 4)
        assert float(row[6]) == pytest.approx(float(row[5]) * flops_per_image("noscope-coral", mode, fold), rel=1e-4)
        assert row[7:10] == ["onnxruntime", "fp32", "cpu"]
    assert result.stdout.splitlines() == out.read_text().splitlines()  # printed as appended
    # Re-running the same command measures nothing again.
    again = run_cli("./run_inference.sh", out, "--quick", "--models", "noscope-coral", "--batch_sizes", "64",
                    "--device", "cpu", "--no_peak")
    assert again.returncode == 0 and "resuming: 2 configuration(s)" in again.stderr
    assert len(read_csv(out)) == 2


@pytest.mark.slow
def test_sweep_and_report_keep_their_files_in_one_folder_beside_the_csv(tmp_path):
    out = tmp_path / "sweep.csv"
    result = run_cli("./run_inference.sh", out, "--quick", "--models", "noscope-night", "--folds", "2",
                     "--batch_sizes", "8", "--device", "cpu", "--backend", "eager")
    assert result.returncode == 0, result.stderr
    machine = json.loads((tmp_path / "sweep-report" / "machine.json").read_text())
    assert machine["matmul_flops"]["fp32"] > 0 and "amx_bf16" in machine["cpu_features"]
    result = run_cli(sys.executable, "util/inference_report.py", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep-report", "sweep.csv"]
    assert sorted(p.name for p in (tmp_path / "sweep-report").iterdir()) == [
        "machine.json", "report.md", "roofline.png", "speedup.png"]
    assert measured_columns(tmp_path / "sweep-report" / "report.md") == {
        "FoldedCNNs": ["f=2 img/s (speed-up)", "% of matmul probe (f=2)"]}  # --folds 2 measures f=2 alone
    assert "(no f=1)" in (tmp_path / "sweep-report" / "report.md").read_text()


def test_baselines_sweep_phi(tmp_path):
    out = tmp_path / "r.csv"
    result = run_cli("./run_inference.sh", out, "--quick", "--models", "efficientnet-game_apex/squad_count_v2",
                     "--batch_sizes", "16", "--device", "cpu", "--no_peak", "--backend", "eager")
    assert result.returncode == 0, result.stderr
    assert [(r[2], r[4]) for r in read_csv(out)] == [("1", "EfficientNet"), ("2", "EfficientNet")]


@pytest.mark.slow
def test_interrupted_sweep_leaves_whole_rows_and_resumes(tmp_path):
    out = tmp_path / "results.csv"
    command = ["./run_inference.sh", str(out), "--models", "lol/timer-minutes", "apex/squad_count_v2",
               "--folds", "1", "2", "--trials", "3", "--batch_sizes", "16", "--min_time", "0.05", "--warmup", "0",
               "--device", "cpu", "--no_peak", "--backend", "eager", "--chunk", "full"]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once two rows are written, however long that takes here: each row takes at least --min_time,
    # so the sweep cannot get far past them before the kill, however fast the machine.
    while process.poll() is None and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.001)
    assert process.poll() is None, "the sweep ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_csv(out)
    assert 2 <= len(partial) < 12
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)) == 12  # 2 models x 2 folds x 3 trials, none twice
    assert rows[:len(partial)] == partial  # what was written before the kill is untouched


@pytest.mark.slow
def test_ctrl_c_keeps_the_rows_and_says_so_in_one_line(tmp_path):
    out = tmp_path / "results.csv"
    command = ["./run_inference.sh", str(out), "--models", "lol/timer-minutes", "--folds", "1", "2", "--trials", "50",
               "--batch_sizes", "16", "--min_time", "0.05", "--warmup", "0", "--device", "cpu", "--no_peak",
               "--backend", "eager", "--chunk", "full"]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    while process.poll() is None and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.001)
    assert process.poll() is None, "the sweep ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == ("interrupted: every row measured so far is in the CSV: run the same "
                                               "command again to measure only the rest")
    assert 2 <= len(read_csv(out)) < 100


def test_a_row_torn_by_a_crash_is_dropped_and_measured_again(tmp_path):
    out = tmp_path / "results.csv"
    command = ["./run_inference.sh", out, "--models", "lol/timer-minutes", "--folds", "1", "2", "--trials", "1",
               "--batch_sizes", "16", "--min_time", "0", "--warmup", "0", "--device", "cpu", "--no_peak",
               "--backend", "eager", "--chunk", "full"]
    assert run_cli(*command).returncode == 0
    whole = out.read_text().splitlines()
    out.write_text("\n".join(whole[:2]) + "\n" + whole[2][:15])  # the last row, cut short by a crash
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    rows = read_csv(out)
    assert [(r[0], r[2]) for r in rows] == [("lol/timer-minutes", "1"), ("lol/timer-minutes", "2")]
    assert out.read_text().splitlines()[:2] == whole[:2]  # the complete rows are untouched


def test_sweep_refuses_a_foreign_csv(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    result = run_cli("./run_inference.sh", out, "--quick", "--models", "noscope-coral", "--no_peak")
    assert result.returncode == 2 and "not this sweep's" in result.stderr
    assert out.read_text() == "a,b\n1,2\n"
    result = run_cli("./run_inference.sh", tmp_path / "x.csv", "--models", "mnist")
    assert result.returncode == 2 and "unknown model 'mnist'" in result.stderr


FIXTURE = """Model,Trial,Fold,Batch Size,Mode,Throughput,FLOPs/sec,Backend,Precision,Device,Chunk
noscope_coral,0,1,1024,Original,1000.00,1.6e+10,onnxruntime,fp32,cpu,64
noscope_coral,1,1,1024,Original,1200.00,1.9e+10,onnxruntime,fp32,cpu,64
noscope_coral,2,1,1024,Original,1100.00,1.8e+10,onnxruntime,fp32,cpu,64
noscope_coral,0,4,1024,Folded,3300.00,6.0e+10,onnxruntime,fp32,cpu,32
noscope_coral,1,4,1024,Folded,3200.00,5.9e+10,onnxruntime,fp32,cpu,32
efficientnet-game_sot/timer3,0,1,1024,EfficientNet,500.00,7.2e+9,onnxruntime,fp32,cpu,64
efficientnet-game_sot/timer3,0,2,1024,EfficientNet,900.00,8.0e+9,onnxruntime,fp32,cpu,64
"""
MACHINE = {"name": "Test CPU (2 cores)", "matmul_flops": {"fp32": 1.0e11}, "bandwidth_bytes_per_sec": 2.0e10}


def measured_columns(report):
    """{table title: its column titles after Model} of a report.md's tables."""
    tables, title = {}, None
    for line in Path(report).read_text().splitlines():
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("| Model |") and title:
            tables[title] = [cell.strip() for cell in line.strip("|").split("|")][1:]
    return tables


def png_size(path):
    """(width, height) of a PNG, checking it is one."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_from_fixture(tmp_path):
    (tmp_path / "results.csv").write_text(FIXTURE)
    (tmp_path / "results-report").mkdir()
    (tmp_path / "results-report" / "machine.json").write_text(json.dumps(MACHINE))
    result = run_cli(sys.executable, "util/inference_report.py", tmp_path / "results.csv")
    assert result.returncode == 0, result.stderr
    assert "4 configurations of 2 model(s), medians of 7 trials" in result.stdout
    out = tmp_path / "results-report"  # the default: beside the CSV, named after it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results-report", "results.csv"]
    report = (out / "report.md").read_text()
    assert "- Machine: Test CPU (2 cores)" in report and "matmul probe (one large matmul; a reference, not a ceiling): fp32 100.0 GFLOP/s" in report
    # A quick sweep measures f=1 and f=4 (phi 1 and 2 for the baseline): only those columns, one table per kind.
    assert measured_columns(out / "report.md") == {
        "FoldedCNNs": ["f=1 img/s", "f=4 img/s (speed-up)", "% of matmul probe (f=1 / f=4)"],
        "Compound-scaled baselines": ["phi=1 img/s", "phi=2 img/s (speed-up)", "% of matmul probe (phi=1 / phi=2)"]}
    # Medians: f=1 1100 img/s, 1.8e10 FLOP/s = 18% of the probe; f=4 3250 img/s = 2.95x, 5.95e10 = 60%.
    # The speed-up's range pairs trials by number: 3300/1000 and 3200/1200.
    assert "| noscope_coral | 1,100 | 3,250 (2.95x, 2.67-3.30) | 18 / 60 |" in report
    assert "| efficientnet-game_sot/timer3 | 500 | 900 (1.80x) | 7 / 8 |" in report
    width, height = png_size(out / "speedup.png")
    assert width > height > 300
    png_size(out / "roofline.png")


def test_report_columns_are_the_folds_measured_and_a_panel_per_backend(tmp_path):
    rows = ["noscope_coral,0,1,64,Original,100,1e9,eager,fp32,cpu,64",
            "noscope_coral,0,2,64,Folded,150,1e9,eager,fp32,cpu,64",
            "noscope_coral,0,3,64,Folded,180,1e9,eager,fp32,cpu,64",
            "noscope_night,0,1,64,Original,100,1e9,eager,fp32,cpu,64",
            "noscope_night,0,4,64,Folded,250,1e9,eager,fp32,cpu,64"]
    (tmp_path / "one.csv").write_text(FIXTURE.splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    assert run_cli(sys.executable, "util/inference_report.py", tmp_path / "one.csv").returncode == 0
    report = (tmp_path / "one-report" / "report.md").read_text()
    assert measured_columns(tmp_path / "one-report" / "report.md") == {"FoldedCNNs": [
        "f=1 img/s", "f=2 img/s (speed-up)", "f=3 img/s (speed-up)", "f=4 img/s (speed-up)"]}
    assert "| noscope_coral | 100 | 150 (1.50x) | 180 (1.80x) | not measured |" in report
    assert "| noscope_night | 100 | not measured | not measured | 250 (2.50x) |" in report
    assert "Machine: not recorded" in report and "Compound-scaled" not in report
    two = rows + [r.replace("eager", "compile") for r in rows]
    (tmp_path / "two.csv").write_text(FIXTURE.splitlines()[0] + "\n" + "\n".join(two) + "\n")
    assert run_cli(sys.executable, "util/inference_report.py", tmp_path / "two.csv").returncode == 0
    assert "## compile, fp32, cpu, batch 64" in (tmp_path / "two-report" / "report.md").read_text()
    one_height, two_height = png_size(tmp_path / "one-report" / "speedup.png")[1], \
        png_size(tmp_path / "two-report" / "speedup.png")[1]
    assert 1.8 * one_height < two_height < 2.2 * one_height  # one panel per backend, stacked


def test_report_uses_the_peak_of_the_precision_measured(tmp_path):
    bf16 = FIXTURE.replace("onnxruntime,fp32", "compile,bf16")
    (tmp_path / "bf16.csv").write_text(bf16)
    machine = dict(MACHINE, matmul_flops={"fp32": 1.0e11, "bf16": 2.0e11})
    (tmp_path / "machine.json").write_text(json.dumps(machine))
    result = run_cli(sys.executable, "util/inference_report.py", tmp_path / "bf16.csv", "--machine",
                     tmp_path / "machine.json")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "bf16-report" / "report.md").read_text()
    assert "## compile, bf16, cpu, batch 1024" in report
    assert "| noscope_coral | 1,100 | 3,250 (2.95x, 2.67-3.30) | 9 / 30 |" in report  # of the 200 GFLOP/s bf16 peak


def test_report_without_machine_file_and_errors(tmp_path):
    (tmp_path / "results.csv").write_text(FIXTURE)
    result = run_cli(sys.executable, "util/inference_report.py", tmp_path / "results.csv", "--out", tmp_path / "rep")
    assert result.returncode == 0, result.stderr
    assert "| noscope_coral | 1,100 | 3,250 (2.95x, 2.67-3.30) |\n" in (tmp_path / "rep" / "report.md").read_text()
    assert not (tmp_path / "rep" / "roofline.png").exists()
    result = run_cli(sys.executable, "util/inference_report.py", tmp_path / "missing.csv")
    assert result.returncode == 2 and "run ./run_inference.sh" in result.stderr


@pytest.mark.slow
def test_peak_probe():
    from util.measure.machine import measure_peak
    peak = measure_peak("cpu", min_time=0.01)
    assert peak["matmul_flops"]["fp32"] > 1e8 and peak["bandwidth_bytes_per_sec"] > 1e7
    assert peak["matmul_flops"]["fp32"] == max(peak["matmul_flops_by_library"]["fp32"].values())
    assert peak["cpu_cores"] == os.cpu_count() and peak["name"]
    assert set(peak["cpu_features"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}
    assert ("bf16" in peak["matmul_flops"]) == BF16_HERE  # the bf16 peak wherever bf16 can be measured


@pytest.mark.slow
def test_benchmark_script(tmp_path):
    result = run_cli(sys.executable, "util/benchmark_eager.py", "--tasks", "noscope-coral", "--batch_size", "16",
                     "--trials", "1", "--min_time", "0", "--device", "cpu", "--out", tmp_path / "bench.md")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "bench.md").read_text()
    assert text == result.stdout
    assert "| noscope-coral |" in text and "Median over configurations of default f=4 / plain eager: " in text
    row = next(line for line in text.splitlines() if line.startswith("| noscope-coral |"))
    assert re.search(r"^\| noscope-coral \| [\d,]+ \(1\.00x\) \| [\d,]+ \(\d+\.\d\dx\) \| [\d,]+ \(\d+\.\d\dx\) \|$", row), row


@pytest.mark.slow
def test_aligned_widths_are_compared_with_the_papers_and_f1(tmp_path):
    """util/compare_paths.py align (and its old name): a row per (fold, align) with FLOPs, first width and both
    speed-ups with their range over the interleaved trials."""
    for command in (["util/compare_paths.py", "align"], ["util/benchmark_align.py"]):
        result = run_cli(sys.executable, *command, "--tasks", "noscope-coral", "--folds", "2", "--aligns", "8",
                         "--batch_size", "16", "--trials", "2", "--min_time", "0", "--device", "cpu",
                         "--out", tmp_path / "align.md")
        assert result.returncode == 0, result.stderr
        rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| noscope-coral |")]
        assert [(r[1], r[2]) for r in rows] == [("1", "-"), ("2", "paper"), ("2", "8")]
        assert [r[3] for r in rows] == ["16", "22", "24"]  # coral's first conv: 16, int(16 * sqrt(2)), 22 -> 24
        assert rows[0][6:8] == ["-", "1.00x |"] and rows[1][6] == "1.00x"
        assert re.search(r"^\d+\.\d\dx, \d+\.\d\d-\d+\.\d\d$", rows[2][6]) and float(rows[2][4]) > float(rows[1][4])
        assert (tmp_path / "align.md").read_text() == result.stdout


@pytest.mark.slow
def test_benchmark_backends_prints_every_variant_with_its_speed_over_eager():
    result = run_cli(sys.executable, "util/benchmark_backends.py", "--tasks", "noscope-coral", "--folds", "4",
                     "--device", "cpu", "--trials", "1", "--min_time", "0", "--warmup", "0", "--modes", "default")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| noscope-coral | 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert len(cells) == 3  # eager nchw, eager channels-last, compile default (no cudagraph on the CPU)
    assert cells[0].startswith(tuple("123456789")) and "(1.00x)" in cells[0]
    measured = r"^[\d,]+ \(\d+\.\d\dx\), \d+ s$"
    assert all(re.search(measured, c) for c in cells[:2]), cells
    # compile needs a C++ compiler on the CPU; without one its cell says why it failed
    assert re.search(measured if "compile" in CPU_BACKENDS else r"^failed \(.*C\+\+ compiler", cells[2]), cells
    assert "Median over configurations of eager channels-last / eager nchw" in result.stdout
