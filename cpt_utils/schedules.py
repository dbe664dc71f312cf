"""Learning-rate schedules as pure functions of the optimizer step.

A schedule that is a function of the step (not an object with hidden state) makes resuming exact by
construction. Continued pre-training re-warms: the run starts from a converged model but a fresh
optimizer, so the LR ramps up linearly before the main phase (Gupta et al., 2023, "Continual
Pre-Training of Large Language Models: How to (re)warm your model?").

A *segment* is one schedule from ``start`` to ``end`` steps. Growing the token budget of a finished run
(400M → 1B) starts a new segment at the step where the old one stopped: re-warm, then cosine (or WSD)
over the new remainder. That is a deliberate choice: the alternative — stretching the old cosine — would
raise the LR retroactively for steps already taken and is not what a continued run did in practice.

A *decay branch* (``cpt_utils.branches``) is the other way to continue a checkpoint: no re-warm, the LR
falls from where it was to the floor over the branch (``decay``), linearly or as 1 − √progress, which
Hägele et al. (2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations") found
to match a cosine run of the same length. Branches off a warmup-stable-decay run's milestones give one
annealed model per milestone at a fraction of the cost of one run per budget.
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
    kind: str            # cosine | wsd | constant | decay (the whole segment decays: a WSD branch)
    decay_fraction: float = 0.2  # WSD: share of the segment spent decaying
    decay_shape: str = "linear"  # WSD and decay: linear | 1-sqrt


def _decayed(peak: float, floor: float, progress: float, shape: str) -> float:
    """LR after ``progress`` ∈ (0, 1] of a decay from ``peak`` to ``floor``."""
    fall = math.sqrt(progress) if shape == "1-sqrt" else progress
    return floor + (peak - floor) * (1 - fall)


def continuation(step: int, total_steps: int, old: Segment, warmup: int, peak: float, min_ratio: float,
                 kind: str, decay_fraction: float, decay_shape: str = "linear", how: str = "rewarm") -> Segment:
    """The segment a resumed run follows when its budget differs from the checkpoint's segment.

    ``rewarm`` (a grown budget): warm up again, then ``kind`` to the new end. ``decay`` (a decay branch):
    from the LR the old segment had at its last step straight down to ``peak × min_ratio``.
    """
    if how == "decay":
        current = lr_at(step - 1, old) if step > old.start else old.peak
        floor = peak * min_ratio
        return Segment(step, total_steps, 0, current, min(1.0, floor / current) if current > 0 else 0.0, "decay",
                       decay_shape=decay_shape)
    return Segment(step, total_steps, warmup, peak, min_ratio, kind, decay_fraction, decay_shape)


def lr_at(step: int, seg: Segment) -> float:
    """Learning rate for optimizer step ``step`` (0-based) within ``seg``."""
    t = step - seg.start
    length = max(1, seg.end - seg.start)
    floor = seg.peak * seg.min_ratio
    if seg.warmup > 0 and t < seg.warmup:
        return seg.peak * (t + 1) / seg.warmup
    if seg.kind == "constant":
        return seg.peak
    if seg.kind == "decay":
        return _decayed(seg.peak, floor, min(1.0, (t + 1) / length), seg.decay_shape)
    if seg.kind == "wsd":
        decay_steps = max(1, round(seg.decay_fraction * length))
        decay_start = length - decay_steps
        if t < decay_start:
            return seg.peak
        return _decayed(seg.peak, floor, min(1.0, (t - decay_start + 1) / decay_steps), seg.decay_shape)
    # cosine from the end of warmup to the end of the segment
    span = max(1, length - seg.warmup)
    progress = min(1.0, (t - seg.warmup + 1) / span)
    return floor + 0.5 * (seg.peak - floor) * (1 + math.cos(math.pi * progress))
