"""Fixed, seeded, stratified subsets of a benchmark's items.

Why stratified: with a few hundred items, a plain random draw can tilt the gold-label mix (BoolQ's
yes/no share, ARC's answer positions) or the subject mix, and a tilted mix moves the majority-class
baseline and what "above chance" means. Strata keep each label (and subject) at its share of the full set.
Why this exact recipe: the items must be identical on every checkpoint and machine, so the only
randomness is numpy's PCG64 from a seed sequence of (seed, benchmark), which is platform-independent.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """One random stream per (seed, name): tasks built from the same benchmark draw the same items."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def quotas(sizes: dict[Hashable, int], limit: int) -> dict[Hashable, int]:
    """Items per stratum: proportional to its size, rounded by largest remainder (ties: stratum order),
    never more than the stratum holds; the quotas add up to ``limit``."""
    total = sum(sizes.values())
    exact = {k: limit * n / total for k, n in sizes.items()}
    out = {k: int(np.floor(v)) for k, v in exact.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - out[k]), _key(k)))
    short = limit - sum(out.values())
    for k in order:
        if short <= 0:
            break
        if out[k] < sizes[k]:
            out[k] += 1
            short -= 1
    return out


def _key(k: Hashable) -> str:
    return repr(k)


def stratified_sample(items: Sequence, limit: int | None, rng: np.random.Generator,
                      stratum: Callable[[object], Hashable]) -> list[int]:
    """Indices (ascending) of ``limit`` items drawn without replacement within each stratum; all items
    when ``limit`` is None or not smaller than the set."""
    if limit is None or len(items) <= limit:
        return list(range(len(items)))
    if limit <= 0:
        raise ValueError(f"eval.limit must be positive, got {limit}")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[stratum(item)].append(i)
    picks: list[int] = []
    share = quotas({k: len(v) for k, v in groups.items()}, limit)
    for k in sorted(groups, key=_key):
        members = groups[k]
        if share[k]:
            picks += [members[j] for j in rng.choice(len(members), size=share[k], replace=False)]
    return sorted(picks)
