"""Comparing measured throughput: speed-ups with their spread, ties, and the fold to take.

Every speed-up the project prints comes from trials taken interleaved (trial t of each configuration ran one after
another, so that drift in a shared machine's speed hits all alike): the ratio of two configurations is taken per
trial, and its median is printed with the range over the trials. Where that range holds 1.0 the two tie, and the
chooser takes the smaller fold: it costs less to train and keeps more accuracy. One trial has no spread and says so.
"""
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    """A speed-up over interleaved trials: the median of the per-trial ratios, their range, and how many."""

    median: float
    low: float
    high: float
    trials: int

    @property
    def verdict(self):
        """faster, slower, tie (the range holds 1.0), or one trial (no spread to tell)."""
        if self.trials < 2:
            return "one trial"
        return "faster" if self.low > 1 else "slower" if self.high < 1 else "tie"

    def spread(self, note=None):
        """' (range 1.10-1.30 over 5 trials)', or ' (one trial: no spread)'; `note` is added inside the brackets."""
        said = ("one trial: no spread" if self.trials < 2 else
                f"range {self.low:.2f}-{self.high:.2f} over {self.trials} trials")
        return f" ({said}{', ' + note if note else ''})"


def ratio(trials, key, base=1):
    """The Ratio of `key` over `base` in `trials` ({key: [images/sec per trial, in trial order]}), the trials paired
    by their order; None when either has no trial."""
    pairs = list(zip(trials.get(key) or [], trials.get(base) or []))
    if not pairs or not all(b for _, b in pairs):
        return None
    ratios = [a / b for a, b in pairs]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def medians(trials):
    """{key: median images/sec} of `trials` ({key: [images/sec per trial]})."""
    return {key: statistics.median(values) for key, values in trials.items() if values}


def speedups(medians, base=1):
    """{key: medians[key] / medians[base]} for every key of `medians` ({key: median images/sec}); {} when the base
    was not measured (or measured nothing)."""
    reference = medians.get(base)
    if not reference:
        return {}
    return {key: value / reference for key, value in medians.items()}


def fastest(medians, base=1):
    """(key, its speed-up over `base` or None) of the fastest configuration in `medians` (median images/sec)."""
    best = max(medians, key=medians.get)
    return best, speedups(medians, base).get(best)


def choose(trials):
    """The key to take from `trials` ({key: [images/sec per trial]}; a key is a fold, or (fold, batch size)): the
    fastest by median, unless a smaller key (the smaller fold, then the smaller batch) ties with it (their per-trial
    ratios' range holds 1.0), then the smallest such key; equal medians: the smaller key."""
    by_key = medians(trials)
    top = max(by_key.values())
    best = min(k for k, v in by_key.items() if v == top)
    for key in sorted(k for k in trials if k < best and trials[k]):
        r = ratio(trials, best, key)
        if r is not None and r.verdict == "tie":
            return key
    return best


@dataclass(frozen=True)
class BoundChoice:
    """The (fold, batch size) to take within a latency bound (choose_within), the best f=1 point within it (None if
    none fits) and the pick's Ratio over it (None without one)."""

    pick: tuple
    original: tuple | None
    gain: Ratio | None


def choose_within(trials, p99_ms, bound_ms):
    """The BoundChoice among the points of `trials` ({(fold, batch size): [images/sec per trial]}) whose 99th
    percentile latency (`p99_ms`: {point: ms}) is at most `bound_ms`, by `choose`'s rule (ties: the smaller fold,
    then the smaller batch); a folded pick that ties with the f=1 point to take gives way to it (ties are not
    transitive: a point can tie with the fastest and with f=1's while f=1's is slower than the fastest). None when
    no point fits."""
    fits = {k: v for k, v in trials.items() if v and p99_ms.get(k) is not None and p99_ms[k] <= bound_ms}
    if not fits:
        return None
    pick = choose(fits)
    originals = {k: v for k, v in fits.items() if k[0] == 1}
    original = choose(originals) if originals else None
    gain = ratio(fits, pick, original) if original else None
    if gain is not None and gain.verdict == "tie":
        pick, gain = original, ratio(fits, original, original)
    return BoundChoice(pick, original, gain)


def comparison(trials, key, base=1, name=None, base_name=None):
    """How `key` compares with `base` in words: 'f=4 at 1.23x f=1 (range 1.10-1.30 over 5 trials)', 'f=4 and f=1 tie
    (ratio 0.94-1.06 over 5 trials)', or '... (one trial: no spread)'; "" when either is missing."""
    r = ratio(trials, key, base)
    if r is None:
        return ""
    name, base_name = name or f"f={key}", base_name or f"f={base}"
    if r.verdict == "tie":
        return f"{name} and {base_name} tie (ratio {r.low:.2f}-{r.high:.2f} over {r.trials} trials)"
    return f"{name} at {r.median:.2f}x {base_name}{r.spread()}"


@dataclass(frozen=True)
class FoldChoice:
    """The fold to take from interleaved trials (choose) and what the trials say of it, in words: against f=1 (for
    f=1, the fastest other fold against it), and, where a faster fold ties with it, that tie."""

    fold: int
    fastest: int
    against_original: str
    tie: str

    @property
    def says(self):
        return "; ".join(part for part in (self.against_original, self.tie) if part)


def fold_choice(trials, verb="taken"):
    """The FoldChoice of `trials` ({fold: [images/sec per trial]}): `says` compares the fold taken with f=1 ('f=4 at
    1.23x f=1 (range ...)'; for f=1, the fastest other fold against it) and, where a faster fold ties with it, adds
    that comparison and ': the smaller fold is <verb>'. infer.py, the sweep and util/choose_fold.py all speak so."""
    by_fold = medians(trials)
    best, top = choose(trials), fastest(by_fold)[0]
    against = ""
    if best > 1 and 1 in trials:
        against = comparison(trials, best, 1)
    elif best == 1 and top == 1 and len(by_fold) > 1:
        against = comparison(trials, max((f for f in by_fold if f != 1), key=by_fold.get), 1)
    tie = f"{comparison(trials, top, best)}: the smaller fold is {verb}" if top != best else ""
    return FoldChoice(best, top, against, tie)


PRECISION_VERDICTS = {"faster": "int8 is faster here: deploy it once util/export.py --int8 has checked its accuracy",
                      "slower": "int8 is slower than fp32 for this model here: deploy fp32",
                      "tie": "int8 and fp32 tie within the trials' spread here (more --trials may tell): deploy fp32",
                      "one trial": "one trial cannot tell a difference from noise: measure with --trials 5"}


def precision_verdict(trials, paired=None):
    """The line comparing int8's fold to take with fp32's (choose of each), with the range of their ratio over
    `trials` ({(precision, fold): [images/sec per trial]}), paired trial by trial (interleaved, or as `paired` says),
    and against fp32 f=1 too where fp32's fold to take is another."""
    of = {p: {f: t for (q, f), t in trials.items() if q == p} for p in ("int8", "fp32")}
    f8, f32 = choose(of["int8"]), choose(of["fp32"])
    int8, fp32 = medians(of["int8"])[f8], medians(of["fp32"])[f32]
    r = ratio(trials, ("int8", f8), ("fp32", f32))
    line = f"int8 f={f8} at {r.median:.2f}x fp32 f={f32}{r.spread(paired)} ({int8:,.0f} vs {fp32:,.0f} images/sec)"
    if f32 != 1 and ("fp32", 1) in trials:  # against the original as deployed today, too
        original = ratio(trials, ("int8", f8), ("fp32", 1))
        line += f" and {original.median:.2f}x fp32 f=1{original.spread(paired)}"
    return f"{line}: {PRECISION_VERDICTS[r.verdict]}"
