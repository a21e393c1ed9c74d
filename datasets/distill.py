"""Distillation: a split's samples paired with the teacher's logits for them."""
from torch.utils.data import Dataset

from datasets.loaders import split_targets


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
