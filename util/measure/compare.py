"""Comparing measured throughput: the speed-up of each configuration over a base (f=1 by default) and the fastest
one, from median images/sec. Every command that prints a speed-up or names the fastest fold calls these."""


def speedups(medians, base=1):
    """{key: medians[key] / medians[base]} for every key of `medians` ({key: median images/sec}); {} when the base
    was not measured (or measured nothing)."""
    reference = medians.get(base)
    if not reference:
        return {}
    return {key: value / reference for key, value in medians.items()}


def fastest(medians, base=1):
    """(key, its speed-up over `base` or None) of the fastest configuration in `medians`."""
    best = max(medians, key=medians.get)
    return best, speedups(medians, base).get(best)


def speedup_note(medians, key, base=1, base_name="f=1"):
    """" (1.23x f=1)": `key`'s speed-up over `base` for a message; "" for the base itself or without it."""
    ratio = speedups(medians, base).get(key)
    return f" ({ratio:.2f}x {base_name})" if ratio is not None and key != base else ""
