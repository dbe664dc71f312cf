"""Learning-rate schedules as pure functions of the optimizer step.

A schedule that is a function of the step (not an object with hidden state) makes resuming exact by
construction. Continued pre-training re-warms: the run starts from a converged model but a fresh
optimizer, so the LR ramps up linearly before the main phase (Gupta et al., 2023, "Continual
Pre-Training of Large Language Models: How to (re)warm your model?").

A *segment* is one schedule from ``start`` to ``end`` steps. Growing the token budget of a finished run
(400M → 1B) starts a new segment at the step where the old one stopped: re-warm, then cosine (or WSD)
over the new remainder. That is a deliberate choice: the alternative — stretching the old cosine — would
raise the LR retroactively for steps already taken and is not what a continued run did in practice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    start: int           # first optimizer step of this schedule
    end: int             # step at which the schedule reaches its final LR
    warmup: int          # steps of linear (re-)warmup
    peak: float
    min_ratio: float
    kind: str            # cosine | wsd | constant
    decay_fraction: float = 0.2  # WSD: share of the segment spent decaying


def lr_at(step: int, seg: Segment) -> float:
    """Learning rate for optimizer step ``step`` (0-based) within ``seg``."""
    t = step - seg.start
    length = max(1, seg.end - seg.start)
    floor = seg.peak * seg.min_ratio
    if seg.warmup > 0 and t < seg.warmup:
        return seg.peak * (t + 1) / seg.warmup
    if seg.kind == "constant":
        return seg.peak
    if seg.kind == "wsd":
        decay_steps = max(1, round(seg.decay_fraction * length))
        decay_start = length - decay_steps
        if t < decay_start:
            return seg.peak
        progress = min(1.0, (t - decay_start + 1) / decay_steps)
        return floor + (seg.peak - floor) * (1 - progress)  # linear decay to the floor
    # cosine from the end of warmup to the end of the segment
    span = max(1, length - seg.warmup)
    progress = min(1.0, (t - seg.warmup + 1) / span)
    return floor + 0.5 * (seg.peak - floor) * (1 + math.cos(math.pi * progress))
