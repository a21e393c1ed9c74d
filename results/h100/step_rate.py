"""The training ceiling without a data loader: images/sec of fold_trainer's step on batches already on the device.

Same model, optimizer, loss and batch size as fold_trainer.py (paper protocol, fp32 or --amp); the
batch is random and never leaves the device. Set beside fold_trainer's own images/sec, it says
whether training is limited by loading data (the trainer far below this) or by the step itself.

    python3 results/h100/step_rate.py sot/coin_count-digits_3_4-v2 --folds 1 4 [--amp] [--device cuda]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a command: make the repository importable

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from config.tasks import get_task  # noqa: E402
from models import build_classifier  # noqa: E402
from util.core.device import pick_device  # noqa: E402
from util.train.protocol import make_optimizer, paper_protocol  # noqa: E402
from util.measure.benchmark import time_calls  # noqa: E402


def step_rate(task, fold, batch_size, device, amp, min_time):
    """Training images/sec of one fold_trainer step (forward, loss, backward, optimizer) on resident data."""
    protocol = paper_protocol(task, fold)
    model = build_classifier(task, fold).to(device).train()
    optimizer = make_optimizer(model, protocol)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    n = batch_size // fold * fold
    images = torch.randn(n, *task.input_shape, device=device)
    labels = torch.randint(0, task.num_classes, (n,), device=device)

    def step():
        with torch.autocast(device.type, torch.float16, enabled=amp):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(10):
        step()
    return n * time_calls(step, device, iters=50, min_time=min_time)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--batch_size", type=int, default=32, help="images per step; default 32 (the paper's)")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA)")
    parser.add_argument("--min_time", type=float, default=2.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    task, device = get_task(args.task), pick_device(args.device)
    for fold in args.folds:
        rate = step_rate(task, fold, args.batch_size, device, args.amp, args.min_time)
        print(f"{task.name} f={fold} batch {args.batch_size} {'amp' if args.amp else 'fp32'} {device}: "
              f"{rate:,.0f} images/sec with data resident on the device")


if __name__ == "__main__":
    main()
