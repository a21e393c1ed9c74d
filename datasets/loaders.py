"""Train/val/test splits for every task family (docs/protocol.md, section 4).

- CIFAR-10/100: torchvision's datasets in `data/cifar10`, `data/cifar100`; validation is the last
  5000 + (f - 5000 % f) training images of a seeded shuffle; RandomCrop(32, 4) and horizontal
  flips on the training part only; normalised.
- Game tasks: an ImageFolder tree `<data_root>/<task>/{train,val,test}/<class>/*.png`, ToTensor only.
- NoScope tasks: `data/noscope-<task>-subset/{train,val,test}/{0,1}/*.png`, ToTensor only.
- A user's own data (`--data DIR`, datasets/folder.py): the same ImageFolder layout, images read as grayscale or
  RGB (the task's C) and resized (bilinear) to its H x W where they differ; ToTensor only; ordered as game data.
For folded runs the game and NoScope sample lists are shuffled once with the seed, so that every
folded group mixes classes; NoScope's validation and test sets are permuted once more (the authors'
orders, docs/protocol.md, section 4.4).
"""
import copy
import os
import random
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, default_collate
from tqdm import tqdm
from torchvision import datasets as tv_datasets
from torchvision import transforms

from config.tasks import SPLITS, USER, dataset_name, resolve_dataset
from datasets.folder import LAYOUT
from util.core.device import REPO

DATA_DIR = REPO / "data"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def read_image(path, mode="RGB"):
    """The image at `path` converted to `mode`; a ValueError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path} ({e}); replace or delete the file") from None


def read_rgb(path, hw=None):
    """The image at `path` as RGB; a ValueError naming the file if it cannot be decoded or is not H x W = `hw`."""
    image = read_image(path)
    if hw is not None and (image.height, image.width) != tuple(hw):
        raise ValueError(f"image {path} is {image.height}x{image.width}, but the task takes "
                         f"{hw[0]}x{hw[1]} images (H x W): resize the data")
    return image


def fit_image(image, input_shape):
    """A PIL image as grayscale (C = 1) or RGB (C = 3), resized (bilinear) to `input_shape`'s H x W where it differs:
    how a user's own images are read."""
    c, h, w = input_shape
    image = image.convert("L" if c == 1 else "RGB")
    if (image.height, image.width) != (h, w):
        image = image.resize((w, h), Image.Resampling.BILINEAR)
    return image


def read_resized(path, input_shape):
    """The image file at `path` through fit_image; a ValueError naming the file if it cannot be decoded."""
    return fit_image(read_image(path, "L" if input_shape[0] == 1 else "RGB"), input_shape)


def image_reader(task):
    """How `task`'s image files are read: resized for a user's data, else checked to be the task's size."""
    if task.family == USER:
        return partial(read_resized, input_shape=task.input_shape)
    return partial(read_rgb, hw=task.input_shape[1:])


def uint8_chw(image):
    """A PIL image as a (C, H, W) uint8 tensor (grayscale: C = 1)."""
    array = np.array(image)
    return torch.from_numpy(array[:, :, None] if array.ndim == 2 else array).permute(2, 0, 1)


class CachedImages(Dataset):
    """An image folder decoded once into memory as uint8 (ToTensor's float images on access).

    Specialized-CNN inputs are tiny (a 22x52 game crop is 3.4 kB), so whole splits fit in memory and
    epochs stop paying for PNG decoding.
    """

    def __init__(self, folder_dataset, desc=""):
        self.classes, self.targets = folder_dataset.classes, list(folder_dataset.targets)
        images = [uint8_chw(folder_dataset.loader(path))
                  for path, _ in tqdm(folder_dataset.samples, desc=f"loading {desc}", leave=False, disable=None)]
        self.images = torch.stack(images)
        self.labels = torch.tensor(self.targets, dtype=torch.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i].float().div_(255), self.targets[i]

    def __getitems__(self, indices):
        """A whole mini-batch in one indexing (the DataLoader's batched read): per-sample reads and their collation
        cost as much as a folded training step's forward pass on these tiny images."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return Batch((self.images[indices].float().div_(255), self.labels[indices]))


class Batch(tuple):
    """A mini-batch a dataset's `__getitems__` read already collated: (images, labels[, teacher logits])."""


def collate(samples):
    """The DataLoader's collate_fn for every split: a Batch as it is, a list of samples through default_collate."""
    return samples if isinstance(samples, Batch) else default_collate(samples)


def read_items(data, indices):
    """The samples `indices` of `data`: a Batch where `data` reads whole mini-batches, else a list of samples."""
    if callable(getattr(data, "__getitems__", None)):
        return data.__getitems__(indices)
    return [data[i] for i in indices]


class DataMissing(Exception):
    """A dataset is not where it must be; the message says where and how to get it."""


def default_data_root():
    """Where game data lives: $DATA_ROOT, else `data_root/` in the repository."""
    return Path(os.environ.get("DATA_ROOT") or REPO / "data_root")


def data_location(dataset, data_dir=DATA_DIR, data_root=None):
    """The folder holding `dataset`'s files (a user's: the --data folder)."""
    task, _ = resolve_dataset(dataset)
    if task.family == USER:
        return Path(task.data)
    if task.family == "cifar":
        return Path(data_dir) / dataset
    if task.family == "noscope":
        return Path(data_dir) / f"{dataset}-subset"
    return Path(data_root or default_data_root()) / dataset


def how_to_get(dataset, location):
    """One sentence on how to put `dataset` at `location`."""
    task, synthetic = resolve_dataset(dataset)
    if task.family == USER:
        return f"give --data {LAYOUT}"
    if synthetic:
        return f"train.py generates it when it is missing (python3 train.py SAVEDIR --datasets {dataset})"
    if task.family == "cifar":
        return f"pass --download (needs the internet) or put torchvision's {task.name} files in {location}"
    if task.family == "noscope":
        return ("make it from the NoScope video and label CSV with util/noscope_video_save.py and "
                "util/noscope_split.py (or util/noscope_split.py --video)")
    return (f"untar the authors' game_data.tar so that {location}/{{train,val,test}}/<class>/*.png exist, "
            "or point --data_root (or $DATA_ROOT) at the folder holding it")


def reorder(data, order):
    """Put an ImageFolder's samples in `order` (a list of indices into its current sample list)."""
    data.samples = [data.samples[i] for i in order]
    data.imgs, data.targets = data.samples, [t for _, t in data.samples]


def seeded_permutation(n, seed):
    """`random.seed(seed); indices = list(range(n)); random.shuffle(indices)`, without touching the global generator."""
    indices = list(range(n))
    random.Random(seed).shuffle(indices)
    return indices


def _image_folder_splits(dataset, root, class_names, reader, seed, cache, shuffle_samples, noscope):
    """ImageFolder train/val/test under `root`, checked, in the authors' orders (docs/protocol.md, section 4.4):
    with `shuffle_samples` each split's sample list shuffled by `seed`; NoScope's val and test then permuted
    once more by `seed`."""
    splits, classes, name = {}, None, dataset_name(dataset)
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir() or not any(folder.iterdir()):
            raise DataMissing(f"{name}: missing or empty split directory {folder}; {how_to_get(dataset, root)}")
        try:
            data = tv_datasets.ImageFolder(folder, transform=transforms.ToTensor(), loader=reader)
        except (FileNotFoundError, RuntimeError) as e:
            raise DataMissing(f"{name}: no images in {folder} ({e}); {how_to_get(dataset, root)}") from None
        if classes is not None and data.classes != classes:
            raise ValueError(f"{name}: class folders of {folder} ({', '.join(data.classes)}) differ from "
                             f"those of {root / 'train'} ({', '.join(classes)}); every split needs the same classes")
        classes = data.classes
        if shuffle_samples:  # random.seed(seed); random.shuffle(samples)
            reorder(data, seeded_permutation(len(data.samples), seed))
        if noscope and split != "train":
            reorder(data, seeded_permutation(len(data.samples), seed))
        splits[split] = CachedImages(data, f"{name} {split}") if cache else data
    if class_names and tuple(classes) != tuple(sorted(class_names)):
        raise ValueError(f"{name}: class folders {', '.join(classes)} differ from the task's classes "
                         f"{', '.join(sorted(class_names))} (config/.../model_description.json)")
    return splits


def cifar_split_indices(n, fold, val_size=5000, seed=19):
    """(train, val) indices into CIFAR's `n` training images, as the authors choose them: `random.seed(seed)`,
    shuffle `list(range(n))`, validation = the last `val_size + (fold - val_size % fold)` (5001, 5002, 5001, 5004
    images for f = 1..4), training the rest."""
    order = seeded_permutation(n, seed)
    n_val = val_size + (fold - val_size % fold)
    if n_val >= n:
        raise ValueError(f"a validation split of {n_val} images leaves no training images in {n}: lower --val_size")
    return order[:-n_val], order[-n_val:]


def _cifar_splits(dataset, root, fold, seed, download, augment, val_size):
    cls = tv_datasets.CIFAR10 if dataset == "cifar10" else tv_datasets.CIFAR100
    normalize = [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    plain = transforms.Compose(normalize)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *normalize])
    try:
        full = cls(root, train=True, download=download, transform=train_tf if augment else plain)
        test = cls(root, train=False, download=download, transform=plain)
    except RuntimeError:
        raise DataMissing(f"{dataset}: not found in {root}; {how_to_get(dataset, root)}") from None
    try:
        train, val = cifar_split_indices(len(full), fold, val_size, seed)
    except ValueError as e:
        raise ValueError(f"{dataset}: {e}") from None
    val_source = copy.copy(full)
    val_source.transform = plain
    return {"train": Subset(full, train), "val": Subset(val_source, val), "test": test}


def load_splits(dataset, fold=1, data_dir=DATA_DIR, data_root=None, seed=19, download=False, augment=True,
                val_size=5000, cache=True, shuffle_samples=None):
    """`{"train": ..., "val": ..., "test": ...}` datasets of (image, label) for `dataset` at fold `fold`.

    The splits and orders depend on `seed` alone (docs/protocol.md, section 4): not on workers, processes or
    resumes. `shuffle_samples` (default: fold > 1) shuffles the game and NoScope sample lists, as the authors
    do for folded runs without distillation. `augment=False` gives CIFAR's training images without
    augmentation (for teacher logits); `cache=False` reads game and NoScope images from disk every epoch
    instead of holding them in memory.
    """
    task, _ = resolve_dataset(dataset)
    root = data_location(dataset, data_dir, data_root)
    if task.family == "cifar":
        return _cifar_splits(dataset, root, fold, seed, download, augment, val_size)
    if not root.is_dir():
        raise DataMissing(f"{dataset_name(dataset)}: no data at {root}; {how_to_get(dataset, root)}")
    if shuffle_samples is None:
        shuffle_samples = fold > 1
    return _image_folder_splits(dataset, root, task.class_names, image_reader(task), seed, cache,
                                shuffle_samples, task.family == "noscope")


def split_targets(data):
    """Labels of every sample of a split, without loading images."""
    if isinstance(data, Subset):
        return [split_targets(data.dataset)[i] for i in data.indices]
    return list(data.targets)
