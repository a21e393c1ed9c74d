"""Synthetic stand-ins for the game-scraping datasets: an ImageFolder tree whose classes are the task's class names
rendered as text with TrueType fonts over textured backgrounds; class `other` is clutter (datasets/synthetic/)."""
import importlib.util
import json
import shutil
import string
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from config.tasks import SPLITS, get_task
from util.core.files import publish, staging_dir, writing

OTHER = "other"
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf")
SYSTEM_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MARKER = ".synthetic.json"
SUPERSAMPLE = 4  # text is drawn at 4x and box-filtered down, for smooth sub-pixel sizes and offsets


def font_files():
    """The DejaVu TrueType fonts used for the game images: matplotlib's copies, else the system's.

    Only a fixed list of file names is used, so the images do not depend on which other fonts a
    machine happens to have.
    """
    dirs = []
    spec = importlib.util.find_spec("matplotlib")  # locate matplotlib without importing it (slow)
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    dirs.append(SYSTEM_FONT_DIR)
    for d in dirs:
        found = [d / name for name in FONT_NAMES if (d / name).is_file()]
        if found:
            return found
    raise RuntimeError(f"no TrueType fonts found: install matplotlib (it ships DejaVu fonts) or put "
                       f"{', '.join(FONT_NAMES[:2])} in {SYSTEM_FONT_DIR}")


@lru_cache(maxsize=4096)
def _font(path, size):
    return ImageFont.truetype(str(path), size)


# ---------------------------------------------------------------- game-scraping images

def _luminance(rgb):
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _colour(rng, lum_lo, lum_hi):
    """A random RGB colour whose luminance lies in [lum_lo, lum_hi]."""
    while True:
        c = rng.uniform(0, 255, 3)
        if lum_lo <= _luminance(c) <= lum_hi:
            return c


def _background(rng, h, w):
    """A dark textured background (gradient, smooth noise or stripes), float HxWx3 in [0, 255].

    Dark, like a game's HUD behind light text: a fixed contrast polarity keeps the classes
    learnable by a small CNN in a few epochs while colours, fonts and textures still vary.
    """
    base = _colour(rng, 10, 75)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # linear gradient towards a second, similar colour
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1) / 2
        other = np.clip(base + rng.uniform(-35, 35, 3), 0, 255)
        img = base + t[..., None] * (other - base)
    elif kind == 1:  # smooth noise: a coarse random grid upsampled
        coarse = rng.normal(0, 18, (rng.integers(2, 6), rng.integers(3, 9), 3)).astype(np.float32)
        img = base + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    else:  # stripes at a random angle and period
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3, 10)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + rng.uniform(0, 2 * np.pi))
        img = base + wave[..., None] * rng.uniform(6, 20)
    return img.astype(np.float32)


def _text_mask(text, font_path, h, w, rng):
    """An HxW float mask in [0, 1] of `text` filling 60-85% of the height, randomly offset."""
    s = SUPERSAMPLE
    ref = _font(font_path, 100)
    left, top, right, bottom = ref.getbbox(text)
    target_h = rng.uniform(0.7, 0.85) * h * s
    scale = target_h / max(bottom - top, 1)
    scale = min(scale, rng.uniform(0.8, 0.95) * w * s / max(right - left, 1))  # fit the width too
    font = _font(font_path, max(int(round(100 * scale)), 4))
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    slack_x, slack_y = max(w * s - tw, 0), max(h * s - th, 0)
    x = slack_x / 2 + rng.uniform(-0.15, 0.15) * slack_x
    y = slack_y / 2 + rng.uniform(-0.15, 0.15) * slack_y
    big = Image.new("L", (w * s, h * s), 0)
    ImageDraw.Draw(big).text((x - left, y - top), text, font=font, fill=255)
    return np.asarray(big.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255


def _clutter_mask(rng, h, w, class_names, fonts):
    """The mask of an `other` image: random shapes, a string that is no class name, or nothing."""
    kind = rng.integers(3)
    if kind == 0:
        s = SUPERSAMPLE
        big = Image.new("L", (w * s, h * s), 0)
        draw = ImageDraw.Draw(big)
        for _ in range(rng.integers(1, 4)):
            x0, x1 = sorted(rng.uniform(0, w * s, 2))
            y0, y1 = sorted(rng.uniform(0, h * s, 2))
            box = (x0, y0, x1 + s, y1 + s)
            shape = rng.integers(3)
            if shape == 0:
                draw.ellipse(box, fill=255)
            elif shape == 1:
                draw.rectangle(box, fill=255)
            else:
                draw.line(box, fill=255, width=int(rng.integers(s, 3 * s)))
        return np.asarray(big.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255
    if kind == 1:
        longest = max(len(c) for c in class_names if c != OTHER)
        alphabet = string.ascii_letters + string.digits
        while True:
            if rng.random() < 0.5:  # letters and digits
                text = "".join(rng.choice(list(alphabet), rng.integers(1, longest + 2)))
            else:  # a number longer than any class name
                text = "".join(rng.choice(list(string.digits), longest + 1))
            if text not in class_names:
                break
        return _text_mask(text, fonts[rng.integers(len(fonts))], h, w, rng)
    return np.zeros((h, w), np.float32)


def render_game_image(text, h, w, rng, class_names=(), fonts=None):
    """One HxW RGB uint8 image of `text` (or clutter when `text` is `other`) drawn with `rng`."""
    fonts = fonts or font_files()
    img = _background(rng, h, w)
    if text == OTHER:
        mask = _clutter_mask(rng, h, w, class_names, fonts)
    else:
        mask = _text_mask(text, fonts[rng.integers(len(fonts))], h, w, rng)
    ink = _colour(rng, 180, 255)
    img = img * (1 - mask[..., None]) + ink * mask[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    radius = rng.uniform(0, 0.6)
    if radius > 0.2:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    img = img + rng.normal(0, rng.uniform(1, 6), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _game_tree_complete(root, meta, class_names, per_class):
    marker = root / MARKER
    if not marker.is_file() or json.loads(marker.read_text()) != meta:
        return False
    return all(len(list((root / split / name).glob("*.png"))) == n
               for split, n in zip(SPLITS, per_class) for name in class_names)


def make_game_dataset(task, root, per_class=(60, 15, 15), seed=0):
    """Write `root/{train,val,test}/<class name>/<index>.png` for a game task; return `root`.

    `per_class` images per class for train, val and test, at the task's exact H x W. The tree
    is built in a temporary sibling directory and renamed to `root` at the end, so an
    interrupted run never leaves a half tree. An existing complete tree for the same task,
    counts and seed is returned as is; any other existing `root` is a ValueError.
    """
    task = get_task(task)
    if task.family != "game":
        raise ValueError(f"{task.name} is a {task.family} task; synthetic game images need a game task")
    root = Path(root)
    per_class = tuple(int(n) for n in per_class)
    if len(per_class) != 3 or min(per_class) < 1:
        raise ValueError(f"per_class must be three positive counts (train, val, test), got {per_class}")
    meta = {"task": task.name, "per_class": list(per_class), "seed": int(seed)}
    class_names = task.class_names
    if root.exists():
        if _game_tree_complete(root, meta, class_names, per_class):
            return root
        raise ValueError(f"{root} exists but is not a complete synthetic tree for {meta}; remove it or choose another root")
    _, h, w = task.input_shape
    fonts = font_files()
    tmp = staging_dir(root)
    try:
        with writing(root):
            for split_index, (split, n) in enumerate(zip(SPLITS, per_class)):
                for class_index, name in enumerate(class_names):
                    folder = tmp / split / name
                    folder.mkdir(parents=True)
                    for i in range(n):
                        rng = np.random.default_rng([int(seed), split_index, class_index, i])
                        img = render_game_image(name, h, w, rng, class_names, fonts)
                        Image.fromarray(img, "RGB").save(folder / f"{i}.png", format="PNG")
            (tmp / MARKER).write_text(json.dumps(meta) + "\n")
        try:
            publish(tmp, root)
        except OSError:
            if _game_tree_complete(root, meta, class_names, per_class):  # a concurrent run finished first
                return root
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
