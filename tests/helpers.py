"""Shared test helpers: run the entry points as a user would, and write small data in the real on-disk formats."""
import contextlib
import hashlib
import importlib
import io
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fold_trainer
from config import tasks
from util.train.flags import options_from_args, spec_settings
from util.train.spec import build_spec
from util.train import trainer
from util.train.trainer import train

REPO = Path(__file__).resolve().parent.parent


# The shell wrappers and the commands whose main(argv) they run.
WRAPPERS = {"./run_inference.sh": "util/run_inference.py", "./flop_count.sh": "util/flop_count.py"}


def run_cli(*args, cwd=REPO, timeout=3600, new_process=False):
    """Run a command from the repository root as a user would; returns a CompletedProcess.

    A command of this repository (`python3 SCRIPT.py ...`, the script's path relative to the repository, or a shell
    wrapper) runs its main(argv) in this process, in `cwd` (starting Python and PyTorch for each of ~200 command
    lines would cost minutes), with its own argv[0], its output captured, SystemExit as the exit status
    and an uncaught exception as a traceback with status 1. Not thread-safe (argv, cwd and output are the
    process's). `new_process` (or any other program, or a script given by its absolute path) runs a subprocess,
    with this interpreter first on PATH."""
    args = [str(a) for a in args]
    script = WRAPPERS.get(args[0]) or (args[1] if len(args) > 1 and args[0] == sys.executable else None)
    if new_process or not script or not script.endswith(".py") or Path(script).is_absolute():
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return run_main(script, args[2:] if args[0] == sys.executable else args[1:], args, cwd)


def run_main(script, argv, args, cwd=REPO):
    """`script`'s main(argv) in this process, in `cwd` (see run_cli)."""
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_argv, saved_cwd, saved_env = sys.argv, os.getcwd(), dict(os.environ)
    sys.argv = [Path(script).name, *argv]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        restore_environment(saved_env)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


class CommandWorkers:
    """Repository commands run in-process in a few long-lived worker processes (one command at a time each):
    Python and PyTorch start once a worker, not once a command, and whatever native state a command leaves stays
    in its worker, away from the test process. A worker that dies (a crash of native state left behind by an
    earlier command) is replaced, and its command runs again in a new process of its own, as a user runs it."""

    def __init__(self, workers=None):
        self.workers, self.lock = workers or os.cpu_count() or 1, threading.Lock()
        self.pool = self.new_pool()

    def new_pool(self):
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, script, *argv, cwd=REPO, timeout=600):
        """run_cli(sys.executable, script, *argv, cwd=cwd) in a worker; `script` relative to the repository."""
        args = [str(a) for a in (sys.executable, script, *argv)]
        pool = self.pool
        try:
            return pool.submit(run_main, args[1], args[2:], args, str(cwd)).result(timeout)
        except BrokenProcessPool:
            with self.lock:
                if self.pool is pool:
                    self.pool = self.new_pool()
            return run_cli(*args, cwd=cwd, timeout=timeout, new_process=True)

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def restore_environment(saved):
    """Undo what a command changed in os.environ (a task folder it set for its own children), key by key: libraries
    may hold pointers to the values of the others. The task registry is read again where anything changed."""
    changed = {k for k in saved.keys() | os.environ.keys() if saved.get(k) != os.environ.get(k)}
    for key in changed - {"OPENCV_FFMPEG_LOGLEVEL"}:  # set once, on import, by datasets.noscope
        if key in saved:
            os.environ[key] = saved[key]
        else:
            del os.environ[key]
    if changed:
        tasks.all_tasks.cache_clear()


def write_image_folder(root, class_names, hw, per_split=(12, 4, 4), seed=0):
    """An ImageFolder tree whose classes differ by a bright column at a class-specific position."""
    rng = np.random.default_rng(seed)
    h, w = hw
    for split, n in zip(("train", "val", "test"), per_split):
        for k, name in enumerate(sorted(class_names)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = (rng.random((h, w, 3)) * 80).astype(np.uint8)
                col = (k * 3) % (w - 2)
                pixels[:, col:col + 2] = 255
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def write_tiny_cifar10(root, n_train=80, n_test=40, seed=0):
    """CIFAR-10 in torchvision's on-disk format (pickled batches), returning each file's md5."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5 = {}

    def dump(name, obj):
        (folder / name).write_bytes(pickle.dumps(obj))
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()

    def batch(n):
        labels = rng.integers(0, 10, n)
        data = (rng.random((n, 3, 32, 32)) * 100).astype(np.uint8)
        for i, label in enumerate(labels):  # learnable: a bright square whose row depends on the class
            data[i, :, 3 * label:3 * label + 3, 8:24] = 250
        return {"data": data.reshape(n, 3072), "labels": labels.tolist()}

    for i in range(1, 6):
        dump(f"data_batch_{i}", batch(n_train // 5))
    dump("test_batch", batch(n_test))
    dump("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return md5


def trainer_args(savedir, dataset, fold, epochs, **extra):
    """fold_trainer.py's arguments for a short CPU run, as its command line would give them."""
    argv = ["--dataset", dataset, "--fold", str(fold), "--savedir", str(savedir), "--epochs", str(epochs),
            "--workers", "0", "--device", "cpu"]
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    return fold_trainer.get_args_parser().parse_args(argv)


def train_args(args, hooks=None):
    """Train the run of fold_trainer.py's parsed `args` in this process, as its main does (varied by `hooks`, a
    trainer.Hooks, if given); returns result.json."""
    spec = build_spec(args.dataset, args.fold, args.savedir, **spec_settings(args))
    return train(spec, options_from_args(args), hooks or trainer.Hooks())


def train_until_first_checkpoint(args, monkeypatch, hooks=None):
    """Train fold_trainer.py's parsed `args` (varied by `hooks`) as a process that dies right after its first
    current.pth (epoch 1's)."""
    real_save = trainer.save_checkpoint

    def save_then_stop(path, **contents):
        real_save(path, **contents)
        if path.name == "current.pth":
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_args(args, hooks)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)


def assert_same_stats(reference, other):
    """The stats files of run directory `other` equal `reference`'s line by line, except the wall-clock
    train_seconds.txt, which must hold as many lines (one per epoch), rising."""
    for stat in sorted((Path(reference) / "stats").iterdir()):
        got = (Path(other) / "stats" / stat.name).read_text()
        if stat.name == "train_seconds.txt":
            seconds = [float(v) for v in got.split()]
            assert len(seconds) == len(stat.read_text().split()) and seconds == sorted(seconds), stat.name
        else:
            assert got == stat.read_text(), stat.name
