"""A distilled student's epochs within a multiple of its original's training seconds (the distill recipe's budget:
RunSpec.seconds_bound). Before it trains, the student times one of its own training epochs, as its epochs will run,
on copies of its model and optimizer, on this machine, and keeps the epochs that fit; run.json records them, and a
resume keeps them."""
import copy
import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from util.measure.benchmark import synchronize
from util.train import distributed
from util.train.loop import WeightAverage, evaluate, train_one_epoch
from util.train.protocol import make_optimizer


def original_seconds(teacher):
    """The training seconds of the run that trained `teacher` (the result.json beside it), or None."""
    try:
        seconds = json.loads((Path(teacher).parent / "result.json").read_text())["train_seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(seconds) if seconds else None


def seconds_per_epoch(run, loaders, transform):
    """Seconds one training epoch of `run` takes here (data, forward, loss, backward, optimizer and weight average),
    timed as the run's epochs go: a first epoch, then a validation pass (the run evaluates between its epochs, in
    other shapes), then the timed epoch; on copies, leaving the run's weights and random state as they were. (Steps
    timed alone, over a few batches, read 25-45% fast against the epochs that followed: round 16.)"""
    model = copy.deepcopy(run.model)
    optimizer = make_optimizer(model, run.protocol)
    if run.average:
        optimizer.register_step_post_hook(WeightAverage(model, run.protocol.ema).update)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.spec.amp == "fp16")

    def epoch():
        train_one_epoch(model, loaders["train"], optimizer, scaler, run.images_per_input, run.device, run.num_classes,
                        "timing the student's epoch", run.protocol, run.spec.amp, None, run.options.channels_last,
                        transform, run.hooks.loss)
        synchronize(run.device)

    saved = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        epoch()
        evaluate(model, loaders["val"], run.images_per_input, run.device, run.num_classes, "timing: val",
                 run.protocol, run.options.channels_last, run.hooks.loss)
        tic = time.perf_counter()
        epoch()
        seconds = time.perf_counter() - tic
    random.setstate(saved[0])
    np.random.set_state(saved[1])
    return seconds


def bounded_spec(run, loaders, transform, world):
    """`run.spec` with its epochs cut to those that fit in `seconds_bound` times its original's training seconds,
    and epochs_choice saying so; unchanged epochs where they fit, or where the original's seconds are unknown."""
    spec = run.spec
    base = original_seconds(spec.teacher)
    if not base:
        return dataclasses.replace(spec, epochs_choice=f"{spec.epochs_choice}; not bounded: no training seconds "
                                                       f"beside the teacher (its result.json)")
    epoch = seconds_per_epoch(run, loaders, transform)
    fit = int(spec.seconds_bound * base / epoch)
    fit = int(distributed.all_sum([fit], run.device)[0]) // world  # every rank the same epochs
    timing = f"{fit} fit in {spec.seconds_bound:g}x the original's {base:.1f} s here ({epoch:.2f} s an epoch, timed)"
    bounded = dataclasses.replace(spec, epochs=max(1, min(spec.epochs, fit)),
                                  epochs_choice=f"{spec.epochs_choice}: {timing}")
    if distributed.is_main():
        print(f"{spec.name}: trains {bounded.epochs} epochs: {timing}", flush=True)
    return bounded


def resumed_spec(spec, state):
    """`spec` with the epochs its checkpoint `state` was bounded to when it started (not timed again)."""
    recorded = state.get("run", {})
    if not spec.seconds_bound or recorded.get("seconds_bound") != spec.seconds_bound:
        return spec
    return dataclasses.replace(spec, epochs=recorded["epochs"], epochs_choice=recorded["epochs_choice"])
