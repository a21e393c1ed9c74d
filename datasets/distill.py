"""Distillation: a split's samples paired with the teacher's logits for them."""
import torch
from torch.utils.data import Dataset

from datasets.loaders import Batch, read_items, split_targets


class DistillationDataset(Dataset):
    """(image, label, teacher logits) for every sample of `base`; `logits[i]` belongs to `base[i]`."""

    def __init__(self, base, logits):
        if len(base) != len(logits):
            raise ValueError(f"{len(logits)} teacher logits for {len(base)} samples: delete the cached logits")
        self.base, self.logits = base, logits
        self.targets = split_targets(base)  # so that a curriculum can select classes without loading images

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return image, label, self.logits[i]

    def __getitems__(self, indices):
        samples = read_items(self.base, indices)
        if isinstance(samples, Batch):
            return Batch((*samples, self.logits[torch.as_tensor(indices, dtype=torch.int64)]))
        return [(*sample, self.logits[i]) for sample, i in zip(samples, indices)]
