"""Learning-rate schedules have the shapes they claim."""

from __future__ import annotations

import math

import pytest

from cpt_utils.schedules import Segment, continuation, lr_at


def _curve(seg: Segment) -> list[float]:
    return [lr_at(s, seg) for s in range(seg.start, seg.end)]


def test_warmup_then_cosine_to_the_floor():
    seg = Segment(0, 100, 10, 1e-3, 0.1, "cosine")
    lrs = _curve(seg)
    assert lrs[:10] == pytest.approx([1e-3 * (i + 1) / 10 for i in range(10)])  # linear re-warm
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup
    assert lrs[-1] == pytest.approx(1e-4)  # ends exactly at min_lr_ratio × peak
    mid = lr_at(10 + 45, seg)  # halfway through the cosine: half-way between peak and floor
    assert mid == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 46 / 90)))


def test_wsd_is_flat_then_decays_linearly():
    seg = Segment(0, 100, 5, 1e-3, 0.0, "wsd", decay_fraction=0.2)
    lrs = _curve(seg)
    assert lrs[5:80] == pytest.approx([1e-3] * 75)  # stable phase
    decay = lrs[80:]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(0.0, abs=1e-12)


def test_constant_and_segments_starting_later():
    assert _curve(Segment(0, 20, 0, 3e-4, 0.1, "constant")) == pytest.approx([3e-4] * 20)
    continued = Segment(100, 200, 10, 1e-3, 0.1, "cosine")  # a budget grown from 100 to 200 steps
    assert lr_at(100, continued) == pytest.approx(1e-4)  # re-warm restarts at step 100
    assert lr_at(109, continued) == pytest.approx(1e-3)
    assert lr_at(199, continued) == pytest.approx(1e-4)


def test_decay_segments_fall_linearly_or_as_one_minus_sqrt_to_the_floor():
    steps = (0.25, 0.5, 0.75, 1.0)
    linear = _curve(Segment(0, 4, 0, 1e-3, 0.1, "decay"))
    root = _curve(Segment(0, 4, 0, 1e-3, 0.1, "decay", decay_shape="1-sqrt"))
    assert linear == pytest.approx([1e-4 + 9e-4 * (1 - p) for p in steps])
    assert root == pytest.approx([1e-4 + 9e-4 * (1 - math.sqrt(p)) for p in steps])
    assert root[0] < linear[0] and root[-1] == linear[-1] == pytest.approx(1e-4)
    wsd = _curve(Segment(0, 100, 5, 1e-3, 0.0, "wsd", 0.2, "1-sqrt"))
    assert wsd[5:80] == pytest.approx([1e-3] * 75) and wsd[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_decay_branch_continues_from_the_current_lr_without_rewarming():
    main = Segment(0, 100, 10, 1e-3, 0.1, "wsd", 0.2)
    branch = continuation(40, 48, main, 10, 1e-3, 0.1, "wsd", 0.2, "linear", how="decay")
    lrs = [lr_at(s, branch) for s in range(40, 48)]
    assert branch.warmup == 0 and lrs[0] < 1e-3 and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-4)  # the run's floor: min_lr_ratio × the peak LR
    early = continuation(5, 10, main, 10, 1e-3, 0.1, "wsd", 0.2, how="decay")  # branched mid-warmup
    assert early.peak == pytest.approx(lr_at(4, main)) and lr_at(9, early) == pytest.approx(1e-4)
    assert continuation(40, 48, main, 10, 1e-3, 0.1, "wsd", 0.2) == Segment(40, 48, 10, 1e-3, 0.1, "wsd", 0.2)
