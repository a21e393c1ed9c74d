"""The training step's ceiling: images/sec of the trainer's step on batches already on the device, per precision and
memory format, trials interleaved.

One step is what fold_trainer.py does per batch: forward (under autocast for bf16/fp16), cross-entropy, backward and
the recipe's fused Adam, at --batch_size images (rounded down to a multiple of f) of random data that never leaves
the device. Set beside the trainer's own images/sec (summary.csv's train_images_per_sec) it says whether training is
limited by the step or by the work around it; set side by side, the step's speed-up per setting.

    python3 util/step_rate.py sot/coin_count-digits_3_4-v2 noscope-coral --folds 1 4

Settings: fp32 in NCHW (PyTorch's default), fp32 channels-last (the trainer's default: the same math), and bf16
autocast channels-last where the device runs bf16 (CUDA, or a CPU with AVX-512 BF16 or AMX). Each line gives the
median over --trials interleaved trials and their range, and the speed-up over fp32 NCHW with its range.
"""
import argparse
import os
import statistics

import torch
import torch.nn.functional as F

from config.tasks import get_task, task_names
from models import build_classifier
from models.fold import whole_groups
from util.core.cli import add_device_arg, one_line_errors, positive_int, run_command
from util.core.device import cpu_bf16_problem, cpu_name, pick_device
from util.measure.benchmark import time_calls
from util.train.loop import AMP_DTYPES
from util.train.protocol import distill_protocol, make_optimizer

SETTINGS = {"fp32 NCHW": (None, False), "fp32 channels-last": (None, True), "bf16 channels-last": ("bf16", True)}


def make_step(task, fold, batch_size, device, amp, channels_last, seed=0):
    """A function doing one training step on resident random data; returns (step, images per step)."""
    torch.manual_seed(seed)
    model = build_classifier(task, fold).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, distill_protocol(task, fold))
    n = whole_groups(batch_size, fold)
    images = torch.rand(n, *task.input_shape, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, task.num_classes, (n,), device=device)

    def step():
        with torch.autocast(device.type, AMP_DTYPES.get(amp, torch.float16), enabled=amp is not None):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    return step, n


def settings_here(device):
    """The settings this device runs: bf16 only on CUDA or a CPU with bf16 instructions."""
    runs_bf16 = device.type == "cuda" or cpu_bf16_problem() is None
    return {name: s for name, s in SETTINGS.items() if s[0] is None or runs_bf16}


def measure(task, fold, batch_size, device, trials, min_time):
    """{setting: [images/sec per trial]}, trials interleaved over the settings."""
    steps = {name: make_step(task, fold, batch_size, device, *s) for name, s in settings_here(device).items()}
    rates = {name: [] for name in steps}
    for _ in range(trials):
        for name, (step, n) in steps.items():
            rates[name].append(n * time_calls(step, device, iters=5, min_time=min_time))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+", metavar="TASK", choices=task_names(), help="tasks whose CNNs to step")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 4], help="default: 1 4")
    parser.add_argument("--batch_size", type=positive_int, default=32, help="images per step; default 32 (the paper's)")
    parser.add_argument("--trials", type=positive_int, default=5, help="interleaved trials; default 5")
    parser.add_argument("--min_time", type=float, default=1.0, help="seconds per trial at least; default 1.0")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        device = pick_device(args.device)
    where = f"{cpu_name()}, {os.cpu_count()} cores" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"# training step on resident data: {device} ({where}), batch {args.batch_size}, torch {torch.__version__}, "
          f"median of {args.trials} interleaved trials (range)")
    for name in args.tasks:
        task = get_task(name)
        for fold in args.folds:
            rates = measure(task, fold, args.batch_size, device, args.trials, args.min_time)
            base = rates["fp32 NCHW"]
            for setting, values in rates.items():
                ratios = [v / b for v, b in zip(values, base)]
                print(f"{task.name} f={fold} {setting}: {statistics.median(values):,.0f} images/sec "
                      f"({min(values):,.0f}-{max(values):,.0f}), {statistics.median(ratios):.2f}x fp32 NCHW "
                      f"({min(ratios):.2f}-{max(ratios):.2f})", flush=True)


if __name__ == "__main__":
    run_command(main)
