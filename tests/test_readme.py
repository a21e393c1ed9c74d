"""README.md runs as written: every command of its bash blocks, in order, on a copy of the repository, and every
python block. The same commands, with flags appended that cut their budget to seconds (epochs, trials, models).
The repository's own commands (`python3 SCRIPT.py`, the shell wrappers) run their main(argv) in this process, from
the copy's folder (helpers.run_cli: a new Python and PyTorch for each would cost a minute); torchrun, the python
blocks and anything else run as new processes there."""
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO, WRAPPERS, run_cli, write_image_folder

pytestmark = pytest.mark.slow

# Flags appended to a README command that starts with the key: the same command on a smaller budget.
BUDGET = {
    "python3 train.py runs --demo": ["--epochs", "1", "--student_epochs", "1"],
    "python3 train.py runs --model_file": ["--epochs", "1", "--student_epochs", "1", "--batch_size", "8"],
    "python3 train.py runs --datasets": ["--epochs", "1", "--student_epochs", "1"],
    "torchrun": ["--epochs", "1", "--student_epochs", "1"],
    "python3 infer.py": ["--batch_size", "64", "--warmup", "0", "--min_time", "0.05"],
    "./run_inference.sh results.csv": ["--models", "noscope_coral", "--batch_sizes", "64", "--warmup", "0",
                                       "--min_time", "0.05", "--no_peak"],
    "./run_inference.sh mine.csv": ["--batch_sizes", "64", "--warmup", "0", "--min_time", "0.05", "--no_peak"],
}
# What a test cannot run: the install (CI has just done exactly that) and the test command itself.
NOT_RUN = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python3 -m pytest")

# A user's own CNN and images, as README's "Train it on your own images" supposes them.
MY_MODELS = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
"""


def blocks(language):
    """The README's ```language blocks, in order."""
    parts = (REPO / "README.md").read_text().split(f"```{language}\n")[1:]
    return [part.split("```")[0] for part in parts]


def commands():
    """Every command of the bash blocks, in order: lines joined where they end in a backslash, comments dropped,
    the set-up line's `&&` parts apart."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                found += [part.strip() for part in line.split("&&")]
    return found


def budget(command):
    extra = next((flags for prefix, flags in BUDGET.items() if command.startswith(prefix)), [])
    return " ".join([command, *extra])


def test_the_readme_commands_are_the_ones_this_test_knows():
    every = commands()
    assert "python3 train.py runs --demo" in every and any(c.startswith("python3 util/export.py runs/") for c in every)
    unknown = [c for c in every if not c.startswith(NOT_RUN) and not c.startswith(("python3 ", "./", "torchrun "))]
    assert unknown == []


def run(command, copy, env):
    """`command` (budget flags appended) from the copy's folder: in this process where it is one of the repository's
    commands, else through bash."""
    argv = shlex.split(budget(command))
    if argv[0] in WRAPPERS or (argv[0] == "python3" and argv[1].endswith(".py")):
        return run_cli(*([sys.executable, *argv[1:]] if argv[0] == "python3" else argv), cwd=copy)
    return subprocess.run(["bash", "-c", budget(command)], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=1200)


def test_every_readme_command_runs_in_order_on_a_fresh_copy(tmp_path, monkeypatch):
    copy = tmp_path / "FoldedCNNs"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    (copy / "my_models.py").write_text(MY_MODELS)
    write_image_folder(copy / "my_images", ["ant", "bee", "cat"], (64, 64), per_split=(16, 4, 4))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("DATA_ROOT", None)
    monkeypatch.delenv("DATA_ROOT", raising=False)
    for command in commands():
        if command.startswith(NOT_RUN):
            continue
        done = run(command, copy, env)
        assert done.returncode == 0, f"README command failed: {budget(command)}\n{done.stderr[-3000:]}"
    for block in blocks("python"):
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(block)], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"README python block failed:\n{block}\n{done.stderr[-3000:]}"
    assert (copy / "coral_f4.onnx").is_file() and (copy / "coral.csv").read_text().startswith("frame,label,score\n")
