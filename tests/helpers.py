"""Shared test helpers: run the entry points as a user would, and write small data in the real on-disk formats."""
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import fold_trainer

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=REPO, timeout=3600):
    """Run a command from the repository root, with this interpreter first on PATH."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


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
