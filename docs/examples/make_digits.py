"""Write scikit-learn's copy of the UCI handwritten digits (1,797 8x8 grayscale images, 10 classes) as an ImageFolder:
OUT/{train,val,test}/<digit>/<index>.png, 60/20/20 per class (a seeded shuffle), pixel values 0..16 scaled to 0..255.

Real images this project did not make, for the own-CNN path (docs/own_cnn.md). Needs scikit-learn
(`pip install -r requirements-real.txt`: the real-image benchmark's packages; datasets/real.py splits the digits).
"""
import argparse
from pathlib import Path

from PIL import Image

from datasets.real import digit_splits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the ImageFolder root to write, e.g. digits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    args = parser.parse_args(argv)
    try:
        splits = digit_splits(args.seed)
    except ImportError:
        parser.exit(2, "error: this example needs scikit-learn: pip install scikit-learn\n")
    for split, samples in splits.items():
        for i, pixels, label in samples:
            folder = Path(args.out) / split / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    print(f"wrote {sum(map(len, splits.values()))} images to {args.out}/{{train,val,test}}/<digit>/")


if __name__ == "__main__":
    main()
