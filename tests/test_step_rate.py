"""util/step_rate.py: the training step's ceiling per precision and memory format, interleaved, with its spread."""
import sys

from helpers import run_cli
from util.core.device import cpu_bf16_problem


def test_step_rate_prints_every_setting_with_its_spread():
    result = run_cli(sys.executable, "util/step_rate.py", "sot/timer3", "--folds", "2", "--trials", "2",
                     "--min_time", "0", "--batch_size", "4", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# training step on resident data: cpu (") and "median of 2 interleaved trials" in lines[0]
    settings = ["fp32 NCHW", "fp32 channels-last"] + (["bf16 channels-last"] if cpu_bf16_problem() is None else [])
    assert [line.split(": ")[0] for line in lines[1:]] == [f"sot/timer3 f=2 {s}" for s in settings]
    assert lines[1].endswith("1.00x fp32 NCHW (1.00-1.00)") and all(" images/sec (" in line for line in lines[1:])


def test_step_rate_refuses_an_unknown_task():
    result = run_cli(sys.executable, "util/step_rate.py", "no-such-task")
    assert result.returncode == 2 and "invalid choice: 'no-such-task'" in result.stderr
