"""DistributedDataParallel from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), as nanoGPT does it.

Without those variables everything here is a no-op for one process, so the same code trains on one
device or under `torchrun --nproc_per_node N` (NCCL on GPUs, gloo on the CPU).
"""
import os
import pickle

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from util.core.device import pick_device


def setup(device_name=None):
    """Join torchrun's process group if there is one; returns (rank, world size, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world == 1:
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def is_main():
    """True on rank 0, and in a single process: the one process that writes files and prints."""
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args):
    """print on rank 0 only, flushed (the other ranks would repeat the same line)."""
    if is_main():
        print(*args, flush=True)


def all_sum(values, device):
    """Element-wise sum of a list of numbers over all ranks (the list itself in a single process)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def on_main(fn, *args):
    """`fn(*args)` run on rank 0 only; its return value, or the exception it raised, reaches every rank.

    Used for what one process must do for all (generate data, decide whether to resume, evaluate and
    write files): the other ranks wait for it, and a failure stops every rank with the same message.
    """
    if not dist.is_initialized():
        return fn(*args)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args)
        except Exception as e:
            error = e
    box = [(result, error if error is None or _picklable(error) else RuntimeError(str(error)))]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error  # rank 0 re-raises its own exception, traceback included
    result, error = box[0]
    if error is not None:
        raise error
    return result


def _picklable(obj):
    try:
        pickle.dumps(obj)
        return True
    except Exception:
        return False


def cleanup():
    """Leave the process group (at the end of a torchrun job)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler):
    """Rank r of W takes every W-th index of the epoch's shuffled order: each item exactly once per epoch
    across the ranks, with no padding (torch's DistributedSampler repeats items to even the ranks out,
    or drops them). Ranks may get one item more than others; DistributedDataParallel's `join()` absorbs
    the uneven batch counts. The dataset's length is read at every epoch, so a curriculum that grows
    the dataset is followed."""

    def __init__(self, dataset, rank, world, seed=0):
        self.dataset, self.rank, self.world, self.seed = dataset, rank, world, seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return iter(order[self.rank::self.world].tolist())

    def __len__(self):
        return len(range(self.rank, len(self.dataset), self.world))
