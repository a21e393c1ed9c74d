"""A user's own images: an ImageFolder root with train/, val/ and test/, each holding one folder of images per class.

`scan_image_folder` checks the tree before anything trains (every split present, the same class folders in each,
no empty class) and reads every image's header: the class names, the input shape (C from the images' colour
modes: 1 when all are grayscale, else 3 (RGB); H x W the most common size) and how many images will be resized to
it. Files without an image extension are skipped and counted; a file with one that cannot be decoded is an error
naming it.
"""
import dataclasses
from collections import Counter
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from config.tasks import SPLITS

GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")
LAYOUT = "an ImageFolder root holding train/, val/ and test/, each with one folder of images per class"


@dataclasses.dataclass(frozen=True)
class FolderSummary:
    """What scan_image_folder found."""

    root: str
    class_names: tuple  # the class folders, sorted (ImageFolder's label order)
    input_shape: tuple  # (C, H, W) the model takes
    images: dict  # split -> number of images
    resized: int  # images of another size than input_shape's, resized to it when read
    skipped: tuple  # files that are not images (no image extension), skipped

    def describe(self):
        """One line for the run's log."""
        c, h, w = self.input_shape
        counts = " / ".join(f"{s} {self.images[s]}" for s in SPLITS)
        names = ", ".join(self.class_names[:8]) + (" ..." if len(self.class_names) > 8 else "")
        line = (f"data {self.root}: {len(self.class_names)} classes ({names}), {counts} images, "
                f"{'grayscale' if c == 1 else 'RGB'} {h}x{w}")
        if self.resized:
            line += f"; {self.resized} images of other sizes are resized to {h}x{w} (bilinear) when read"
        if self.skipped:
            line += f"; {len(self.skipped)} files that are not images skipped (first: {self.skipped[0]})"
        return line


def is_image(path):
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def class_folders(split_dir):
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root, input_shape=None):
    """The FolderSummary of the ImageFolder tree at `root`; a one-line ValueError naming what is wrong and the fix.
    `input_shape` (C, H, W), when given, is the shape images are read at (C 1 or 3)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder; give {LAYOUT}")
    if input_shape is not None and input_shape[0] not in (1, 3):
        raise ValueError(f"--input_shape {' '.join(map(str, input_shape))}: image folders give 1 (grayscale) or 3 "
                         "(RGB) channels; pass C = 1 or 3")
    classes = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            raise ValueError(f"--data {root} has no {split}/ folder; give {LAYOUT}")
        classes[split] = class_folders(root / split)
        if not classes[split]:
            raise ValueError(f"--data {root}: {split}/ holds no class folders; give {LAYOUT}")
    every = sorted(set().union(*classes.values()))
    for split in SPLITS:
        lacking = [c for c in every if c not in classes[split]]
        if lacking:
            holder = next(s for s in SPLITS if lacking[0] in classes[s])
            raise ValueError(f"--data {root}: class {lacking[0]!r} is in {holder}/ but not in {split}/; every split "
                             "needs the same class folders (add it, or remove it from every split)")
    sizes, modes, images, skipped = Counter(), set(), {}, []
    for split in SPLITS:
        images[split] = 0
        for name in every:
            folder = root / split / name
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            found = [p for p in files if is_image(p)]
            skipped += [str(p) for p in files if not is_image(p)]
            if not found:
                raise ValueError(f"--data {root}: class folder {split}/{name} holds no images "
                                 f"({', '.join(IMG_EXTENSIONS[:4])}, ...); add images or remove the class from every split")
            for path in found:
                try:
                    with Image.open(path) as image:
                        sizes[(image.height, image.width)] += 1
                        modes.add(image.mode)
                except (OSError, SyntaxError, ValueError) as e:
                    raise ValueError(f"cannot read image {path} ({e}); replace or delete the file") from None
            images[split] += len(found)
    if input_shape is None:
        (h, w), _ = sizes.most_common(1)[0]
        input_shape = (1 if modes <= set(GRAYSCALE_MODES) else 3, h, w)
    resized = sum(n for size, n in sizes.items() if size != tuple(input_shape[1:]))
    return FolderSummary(str(root), tuple(every), tuple(input_shape), images, resized, tuple(skipped))
