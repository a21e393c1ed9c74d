"""Curriculum learning for folded game CNNs: start with a few classes, add more on a schedule."""
from torch.utils.data import Dataset

from datasets.loaders import read_items, split_targets


def curriculum_schedule(num_classes, fold, epochs, paper_epochs, slow=False):
    """(classes at the start, classes added per step, epochs per step) of docs/protocol.md, section 3.

    Classes are taken in sorted order: start with max(K//10, f), add max(K//10, 1) every 60 epochs
    (slow: K//20 and 120 epochs). A run shorter than the paper's (`epochs` < `paper_epochs`) shrinks
    the gaps in proportion, so all classes are in by the same fraction of training.
    """
    divisor, gap = (20, 120) if slow else (10, 60)
    start = min(num_classes, max(num_classes // divisor, fold))
    step = max(num_classes // divisor, 1)
    return start, step, max(1, round(gap * epochs / paper_epochs))


class CurriculumDataset(Dataset):
    """The samples of `base` whose class is among the first `active` classes of the schedule."""

    def __init__(self, base, num_classes, start, step, gap):
        self.base, self.num_classes = base, num_classes
        self.start, self.step, self.gap = start, step, gap
        self.targets = split_targets(base)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Follow the schedule at `epoch`; returns the number of active classes."""
        self.epoch = epoch
        self.active = min(self.num_classes, self.start + self.step * (epoch // self.gap))
        self.indices = [i for i, t in enumerate(self.targets) if t < self.active]
        return self.active

    def state_dict(self):
        return {"start": self.start, "step": self.step, "gap": self.gap, "epoch": self.epoch, "active": self.active}

    def load_state_dict(self, state):
        """Continue a saved schedule where it stopped (even if --epochs changed since)."""
        self.start, self.step, self.gap = state["start"], state["step"], state["gap"]
        self.set_epoch(state["epoch"])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.base[self.indices[i]]

    def __getitems__(self, indices):
        return read_items(self.base, [self.indices[i] for i in indices])
