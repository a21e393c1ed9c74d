"""The real-image benchmark: image tasks made offline, reproducibly, from real images that installable packages ship
(scikit-learn's UCI handwritten digits and sample photographs, scikit-image's photographs and textures), so that
the distill recipe is measured on images no one here made (util/make_real_tasks.py writes them;
results/accuracy/real.md measures them).

Each task is a game-family task (the paper's 1_3s_1 game CNN, a config folder's `model_description.json`) over an
ImageFolder of RGB PNGs. The crop tasks cut each picture into three bands (training, validation, test) and take
every crop of a split inside its own band, so that no test pixel was ever seen in training: a test crop is a new
view of the picture, not a near-copy of a training one. Crops vary in size (scale jitter) before they are resized
to the task's input. Everything depends on the seed alone.

`holdout` was built and committed before any tuning on the others, and is reported only at the end.
"""
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_SHARES = (0.7, 0.15, 0.15)  # of each picture's extent along its band axis: train, val, test
GAME_CNN = {"template": "1_3s_1_convnet", "conv_units": 1, "first_channels": 32, "unit_channels": 32,
            "last_channels": 8}  # the game tasks' CNN (coin_count's, goldnumber's)


@dataclasses.dataclass(frozen=True)
class Picture:
    """One source picture: where it comes from, its licence, and how to load it (an HxW or HxWx3 uint8 array)."""

    name: str
    package: str  # "scikit-image", "scikit-learn" or "matplotlib"
    licence: str
    load: object


@dataclasses.dataclass(frozen=True)
class RealTask:
    """A benchmark task: its images (`pictures` cut into crops, or scikit-learn's digits), input and f=1 epochs."""

    name: str
    about: str
    input_shape: tuple  # (C, H, W)
    epochs: int  # of the original (f=1); distilled students get the recipe's budget of it
    pictures: tuple = ()  # crop tasks: one class per picture
    crop_sizes: tuple = (0, 0)  # the smallest and largest crop side, in pixels of the picture scaled as `short_side`
    short_side: int = 384  # every picture is first scaled so that its shorter side has this many pixels
    band_axis: int = 1  # 1: the bands are columns (left to right), 0: rows (top to bottom)
    per_class: tuple = (0, 0, 0)  # crops per class in train, val, test
    holdout: bool = False

    @property
    def class_names(self):
        return [p.name for p in self.pictures] if self.pictures else [str(d) for d in range(10)]


def skimage_picture(name, licence, function=None):
    def load():
        from skimage import data
        return getattr(data, function or name)()
    return Picture(name, "scikit-image", licence, load)


def sklearn_picture(name, licence):
    def load():
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    return Picture(name, "scikit-learn", licence, load)


def matplotlib_picture(name, file, licence):
    def load():
        import matplotlib.cbook
        with matplotlib.cbook.get_sample_data(file) as f:
            return np.array(Image.open(f).convert("RGB"))
    return Picture(name, "matplotlib", licence, load)


SKIMAGE_DOCS = "scikit-image sample data (its docstring names the source)"
PHOTOS = (
    skimage_picture("astronaut", "NASA, no known copyright restrictions (public domain)"),
    skimage_picture("camera", "CC0 (Lav Varshney)"),
    skimage_picture("chelsea", "CC0 (Stefan van der Walt)"),
    skimage_picture("coffee", "CC0 (Rachel Michetti)"),
    skimage_picture("rocket", "SpaceX, released into the public domain"),
    skimage_picture("hubble", "NASA, public domain", "hubble_deep_field"),
    skimage_picture("retina", "CC0 (Mikael Häggström)"),
    sklearn_picture("china", "CC BY 2.0 (danielbuechele on Flickr)"),
    sklearn_picture("flower", "CC BY 2.0 (vultilion on Flickr)"),
    matplotlib_picture("hopper", "grace_hopper.jpg", "US Navy, public domain"),
)
TEXTURES = (
    skimage_picture("brick", "CC0 (cc0textures.com, Bricks25)"),
    skimage_picture("grass", "CC0 (linolafett on DeviantArt)"),
    skimage_picture("gravel", "CC0 (cc0textures.com, Gravel04)"),
    skimage_picture("moon", SKIMAGE_DOCS),
)
HOLDOUT = (
    skimage_picture("ihc", SKIMAGE_DOCS + "; immunohistochemistry", "immunohistochemistry"),
    skimage_picture("cell", SKIMAGE_DOCS),
    skimage_picture("coins", "Brooklyn Museum, no known copyright restrictions"),
    skimage_picture("page", SKIMAGE_DOCS),
    skimage_picture("clock", "public domain (Stefan van der Walt)"),
    skimage_picture("text", "no known copyright restrictions, public domain (Wikipedia)"),
)

TASKS = {t.name: t for t in (
    RealTask("digits", "scikit-learn's copy of the UCI handwritten digits (1,797 8x8 grayscale images, CC BY 4.0), "
             "scaled to 32x32 RGB; 60/20/20 per class by a seeded shuffle", (3, 32, 32), epochs=60),
    RealTask("photos", "ten photographs, one class each; 32x32 crops of 32-56 pixels, train from the left 70% of "
             "each picture, validation from the next 15%, test from the right 15%", (3, 32, 32), epochs=40,
             pictures=PHOTOS, crop_sizes=(32, 56), per_class=(200, 50, 50)),
    RealTask("textures", "four textures and surfaces (grayscale as RGB); 24x24 crops of 24-40 pixels, train from "
             "the top 70% of each picture, validation from the next 15%, test from the bottom 15%", (3, 24, 24),
             epochs=40, pictures=TEXTURES, crop_sizes=(24, 40), band_axis=0, per_class=(300, 75, 75)),
    RealTask("holdout", "six pictures (microscopy, coins, a printed page, a clock, road-sign text) never used for "
             "tuning; 48x48 crops of 40-72 pixels, train from the top 70%, validation from the next 15%, test from "
             "the bottom 15%", (3, 48, 48), epochs=40, pictures=HOLDOUT, crop_sizes=(40, 72), band_axis=0,
             per_class=(200, 50, 50), holdout=True),
)}
TASK_PREFIX = "real/"  # the tasks' names in the registry: real/digits, ...


def rgb(array):
    """An HxW or HxWxC uint8 array (C = 1, 3 or 4) as an RGB PIL image."""
    array = np.asarray(array)
    if array.dtype != np.uint8:  # scikit-image returns floats for a few pictures
        array = (255 * (array - array.min()) / max(float(array.max() - array.min()), 1e-12)).astype(np.uint8)
    image = Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    return image.convert("RGB")


def scaled(image, short_side):
    """`image` scaled (Lanczos) so that its shorter side has `short_side` pixels."""
    w, h = image.size
    factor = short_side / min(w, h)
    return image.resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)


def bands(extent, shares=SPLIT_SHARES):
    """[(start, stop)] of each split's band of an axis of `extent` pixels."""
    edges = np.round(np.cumsum((0,) + shares) * extent).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def crops(image, task, rng):
    """{split: [PIL images]}: task.per_class crops of each split, each inside its own band of `image`."""
    w, h = image.size
    out = {}
    for split, (start, stop), count in zip(("train", "val", "test"), bands((h, w)[task.band_axis]), task.per_class):
        largest = min(task.crop_sizes[1], stop - start, w, h)
        if largest < task.crop_sizes[0]:
            raise ValueError(f"{task.name}: the {split} band ({stop - start} px) is narrower than the smallest crop")
        images = []
        for _ in range(count):
            side = int(rng.integers(task.crop_sizes[0], largest + 1))
            along = int(rng.integers(start, stop - side + 1))
            across = int(rng.integers(0, (w, h)[task.band_axis] - side + 1))
            x, y = (across, along) if task.band_axis == 0 else (along, across)
            box = image.crop((x, y, x + side, y + side))
            images.append(box.resize(task.input_shape[:0:-1], Image.Resampling.BILINEAR))
        out[split] = images
    return out


def digit_splits(seed):
    """{split: [(index, 8x8 uint8 pixels, digit name)]}: scikit-learn's UCI digits, 60/20/20 per class by a shuffle of
    `seed`, pixel values 0..16 scaled to 0..255 (also docs/examples/make_digits.py's)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.default_rng(seed)
    out = {"train": [], "val": [], "test": []}
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        n_train, n_val = round(0.6 * len(indices)), round(0.2 * len(indices))
        parts = {"train": indices[:n_train], "val": indices[n_train:n_train + n_val], "test": indices[n_train + n_val:]}
        for split, part in parts.items():
            out[split] += [(i, (digits.images[i] * (255 / 16)).round().astype(np.uint8), str(label)) for i in part]
    return out


def digit_images(task, seed):
    """{split: [(PIL image, class name)]}: the digits of digit_splits, scaled to the task's input as RGB."""
    return {split: [(rgb(pixels).resize(task.input_shape[:0:-1], Image.Resampling.BILINEAR), label)
                    for _, pixels, label in samples] for split, samples in digit_splits(seed).items()}


def task_images(task, seed):
    """{split: [(PIL image, class name)]} of `task`."""
    if not task.pictures:
        return digit_images(task, seed)
    out = {"train": [], "val": [], "test": []}
    for index, picture in enumerate(task.pictures):
        rng = np.random.default_rng([seed, index])
        for split, images in crops(scaled(rgb(picture.load()), task.short_side), task, rng).items():
            out[split] += [(image, picture.name) for image in images]
    return out


def description(task):
    """The task's config folder file (model_description.json) as a dict."""
    return {"family": "game", "input": list(task.input_shape), "architecture": GAME_CNN,
            "class_names": task.class_names}


def write_images(images, root):
    """Write {split: [(PIL image, class name)]} as the ImageFolder root/<split>/<class>/<n>.png."""
    for split, samples in images.items():
        for n, (image, label) in enumerate(samples):
            folder = Path(root) / split / label
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{n:05d}.png")


def sources(task):
    """Markdown lines on where `task`'s images come from and under which licence."""
    if not task.pictures:
        return ["scikit-learn `load_digits()`: the UCI ML hand-written digits data set (Alpaydin and Kaynak), "
                "CC BY 4.0."]
    return [f"`{p.name}`: {p.package}, {p.licence}" for p in task.pictures]
