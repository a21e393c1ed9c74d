"""Train CIFAR-100 on a generated stand-in, for machines without the CIFAR files (the GPU runs here).

Writes CIFAR-100 in torchvision's on-disk format (`cifar-100-python/{train,test,meta}`, random images
with a class-dependent bright square) under DATA_DIR/cifar100, points torchvision's checksums at it,
then trains one run as fold_trainer.py does, with the remaining arguments. Only for exercising the CUDA training path:
its accuracy means nothing.

    python3 docs/examples/cifar_standin.py DATA_DIR --fold 4 --savedir runs/c100 --epochs 2
"""
import argparse
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR100

from util.train.flags import options_from_args, spec_settings, training_flags
from util.train.spec import build_spec
from util.train.trainer import train


def write_cifar100(root, n_train=5000, n_test=1000, seed=0):
    """CIFAR-100 pickles under root/cifar-100-python; returns {file: md5}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, n)
        data = (rng.random((n, 3, 32, 32)) * 100).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 10)
            data[i, :, 3 * row:3 * row + 3, 3 * col:3 * col + 3] = 250
        (folder / name).write_bytes(pickle.dumps({"data": data.reshape(n, 3072), "fine_labels": labels.tolist()}))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class{i}" for i in range(100)]}))
    for name in ("train", "test", "meta"):
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: cifar_standin.py DATA_DIR [fold_trainer.py flags except --dataset and --data_dir]")
    data_dir = Path(sys.argv[1])
    md5 = write_cifar100(data_dir / "cifar100")
    CIFAR100.train_list = [["train", md5["train"]]]
    CIFAR100.test_list = [["test", md5["test"]]]
    CIFAR100.meta = {"filename": "meta", "key": "fine_label_names", "md5": md5["meta"]}
    parser = argparse.ArgumentParser(parents=[training_flags()])
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--savedir", required=True)
    args = parser.parse_args(["--data_dir", str(data_dir), "--val_size", "500"] + sys.argv[2:])
    print(train(build_spec("cifar100", args.fold, args.savedir, **spec_settings(args)), options_from_args(args)))


if __name__ == "__main__":
    main()
