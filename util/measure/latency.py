"""Latency of inference batches: each batch timed on its own, percentiles by nearest rank, the batch sizes of a
throughput-latency curve and where a fold's throughput saturates.

A curve's images/sec is the one its synchronised batches give (images over the sum of the batches' own times): a
little below an unsynchronised stream of batches on CUDA, where the next batch would queue behind the last.
The figures are compute latency: a folded model needs f images per input, and where images arrive one by one the
first of a group also waits for the other f - 1 (at R images/sec, (f - 1) / R seconds more).
"""
import math
import statistics
import time
from dataclasses import dataclass

from util.core.cli import float_between, positive_int

MIN_BATCHES, MAX_SECONDS, FLOOR_BATCHES = 200, 10.0, 20  # per point: 200 batches, or what 10 s allow and at least 20
CURVE_MAX_BATCH, CURVE_STOP_SECONDS = 4096, 1.0  # the curve doubles up to 4096 images, or until a median passes 1 s


def nearest_rank(values, q):
    """The q-th percentile (0 < q <= 100) of `values` by nearest rank: the smallest value with at least q% of them at
    or below it."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latency:
    """One point's timed batches: median and 99th percentile in milliseconds (nearest rank), how many, and the
    images/sec they give."""

    p50_ms: float
    p99_ms: float
    batches: int
    images_per_sec: float


def latency_of(seconds, images):
    """The Latency of batches of `images` images that took `seconds` (one value per batch)."""
    return Latency(1000 * nearest_rank(seconds, 50), 1000 * nearest_rank(seconds, 99), len(seconds),
                   images * len(seconds) / sum(seconds))


def time_each_batch(run, synchronize, min_batches=MIN_BATCHES, max_seconds=MAX_SECONDS, floor=FLOOR_BATCHES,
                    clock=time.perf_counter):
    """Seconds of each call of `run()`, each synchronised on its own (`synchronize()` before and after): at least
    `min_batches` calls, or as many as `max_seconds` allow and at least `floor`."""
    seconds, started = [], clock()
    synchronize()
    while len(seconds) < min_batches and (len(seconds) < floor or clock() - started < max_seconds):
        start = clock()
        run()
        synchronize()
        seconds.append(clock() - start)
    return seconds


def curve_batch_sizes(fold, largest=CURVE_MAX_BATCH):
    """The curve's batch sizes in images for fold `fold`: f (one folded input), then doubling, each a multiple of f,
    up to `largest`."""
    sizes, size = [], fold
    while size <= largest:
        sizes.append(size)
        size *= 2
    return sizes


def saturation_batch(images_per_sec, within=0.10):
    """The smallest batch size of `images_per_sec` ({batch size: images/sec}) within `within` (10%) of the best."""
    best = max(images_per_sec.values())
    return min(b for b, v in images_per_sec.items() if v >= (1 - within) * best)


BOUNDS_MS = (1, 5, 20, 100)  # the latency bounds of the report's tables


@dataclass
class Curve:
    """One model's throughput-latency curve on one backend, precision and device: per (fold, batch size) point, the
    images/sec of each trial (in trial order) and the median over its trials of each trial's median and p99 (ms)."""

    trials: dict
    p50_ms: dict
    p99_ms: dict

    def folds(self):
        return sorted({fold for fold, _ in self.trials})

    def by_batch(self, fold):
        """{batch size: median images/sec} of `fold`'s points."""
        return {b: statistics.median(v) for (f, b), v in sorted(self.trials.items()) if f == fold}


def curves(frame):
    """{(model, backend, precision, device): Curve} of a results frame's latency rows (Timing latency; the paper's
    widths: Align 1)."""
    rows = frame[(frame["Timing"] == "latency") & (frame["Align"] == 1)]
    found = {}
    for key, part in rows.groupby(["Model", "Backend", "Precision", "Device"], sort=False):
        curve = Curve({}, {}, {})
        for (fold, batch), point in part.sort_values("Trial").groupby(["Fold", "Batch Size"]):
            point_key = (int(fold), int(batch))
            curve.trials[point_key] = [float(v) for v in point["Throughput"]]
            curve.p50_ms[point_key] = float(point["Latency p50 (ms)"].median())
            curve.p99_ms[point_key] = float(point["Latency p99 (ms)"].median())
        found[key] = curve
    return found


def add_latency_args(parser):
    """--curve_max, --latency_batches and --latency_seconds: the curve's largest batch, and how long each latency trial
    times its batches."""
    parser.add_argument("--curve_max", type=positive_int, default=CURVE_MAX_BATCH, metavar="IMAGES",
                        help=f"the curve's largest batch (default {CURVE_MAX_BATCH})")
    parser.add_argument("--latency_batches", type=positive_int, default=MIN_BATCHES,
                        help=f"timed batches per latency trial at least (default {MIN_BATCHES})")
    parser.add_argument("--latency_seconds", type=float_between(1e-3), default=MAX_SECONDS,
                        help=f"seconds a latency trial may take before it stops at {FLOOR_BATCHES} batches or more "
                             f"(default {MAX_SECONDS:g})")

