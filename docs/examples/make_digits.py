"""Write scikit-learn's copy of the UCI handwritten digits (1,797 8x8 grayscale images, 10 classes) as an ImageFolder:
OUT/{train,val,test}/<digit>/<index>.png, 60/20/20 per class (a seeded shuffle), pixel values 0..16 scaled to 0..255.

Real images this project did not make, for the own-CNN path (docs/own_cnn.md). Needs scikit-learn
(`pip install scikit-learn`, not in requirements.txt: only this example uses it).
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the ImageFolder root to write, e.g. digits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        parser.exit(2, "error: this example needs scikit-learn: pip install scikit-learn\n")
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        n_train, n_val = round(0.6 * len(indices)), round(0.2 * len(indices))
        parts = {"train": indices[:n_train], "val": indices[n_train:n_train + n_val], "test": indices[n_train + n_val:]}
        for split, part in parts.items():
            folder = Path(args.out) / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    print(f"wrote {len(digits.target)} images to {args.out}/{{train,val,test}}/<digit>/")


if __name__ == "__main__":
    main()
