"""TeaCache's per-run decisions, on plain tensors (no ComfyUI): first/last steps, the
percent window, max_consecutive_skips, per-cond caches, zero and repeated sigmas,
extrapolation, and the settings check the node uses."""

import math

import numpy as np
import pytest
import torch

from comfyui_fewstep.fewstep.caching import profiles as ti
from comfyui_fewstep.fewstep.caching.state import (OnlineRatio, PolynomialRescale, Rescale, RunState, Settings,
                                                    check)

SCHEDULE = [10.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.0]  # 8 steps


class Const(Rescale):
    """Every call looks like a small change."""

    def __init__(self, value=0.01):
        self.value = value

    def estimate(self, indicator_change):
        return self.value if math.isfinite(indicator_change) else math.inf


def run_through(state: RunState, schedule=SCHEDULE, uuids=("c", "u"), batched=True, x=None):
    """Drive a state like ComfyUI's Euler loop: one evaluation per step, cond+uncond either
    in one call or in two. Returns the per-step skip decisions."""
    decisions = []
    x = torch.ones(2, 4) if x is None else x
    for i, sigma in enumerate(schedule[:-1]):
        state.new_evaluation()
        calls = [list(uuids)] if batched else [[u] for u in uuids]
        step = []
        for call in calls:
            like = [x[:1] * (1 + 0.01 * i)] * len(call)
            ind = [t.clone() for t in like]
            skip = state.decide(call, sigma, ind, like)
            if not skip:
                state.computed(call, sigma, [t * sigma for t in like], like)
            step.append(skip)
        assert len(set(step)) == 1, "all calls of one evaluation follow one decision"
        decisions.append(step[0])
    return decisions


def new(threshold=1.0, rescale=None, **kw):
    return RunState(Settings(threshold, **kw), rescale or Const(), SCHEDULE, start_sigma=1e9, end_sigma=0.0)


def test_first_and_last_steps_are_computed_and_the_rest_may_skip():
    d = run_through(new(threshold=1.0))
    assert d[0] is False and d[-1] is False
    assert any(d[1:-1])


def test_threshold_zero_never_skips():
    assert not any(run_through(new(threshold=0.0)))


@pytest.mark.parametrize("batched", [True, False])
def test_cond_and_uncond_keep_separate_caches_whether_batched_or_not(batched):
    state = new(threshold=1.0)
    run_through(state, batched=batched)
    assert set(state.conds) == {"c", "u"}
    c, u = state.conds["c"], state.conds["u"]
    assert c.outputs and u.outputs and c.outputs[0][1] is not u.outputs[0][1]
    assert state.stats.calls == (8 if batched else 16)


def test_max_consecutive_skips_forces_a_computed_call():
    d = run_through(new(threshold=100.0, max_consecutive_skips=2))
    run = 0
    for skipped in d:
        run = run + 1 if skipped else 0
        assert run <= 2
    assert sum(d) >= 2


def test_start_and_end_window_limit_skipping():
    state = RunState(Settings(100.0), Const(), SCHEDULE, start_sigma=4.0, end_sigma=1.5)
    d = run_through(state)
    for sigma, skipped in zip(SCHEDULE, d):
        if skipped:
            assert 1.5 < sigma <= 4.0


def test_estimates_accumulate_until_the_threshold():
    # est 0.3 per call, threshold 0.5: skip (0.3), compute (0.6 >= 0.5, reset), skip, ...
    d = run_through(new(threshold=0.5, rescale=Const(0.3)))
    middle = d[1:-1]
    assert middle[0] is True
    assert all(not (a and b) for a, b in zip(middle, middle[1:]))


def test_zero_and_repeated_sigmas_do_not_divide_by_zero():
    schedule = [5.0, 5.0, 3.0, 3.0, 0.0, 0.0]
    state = RunState(Settings(100.0), Const(), schedule, start_sigma=1e9, end_sigma=0.0)
    run_through(state, schedule=schedule)  # raises on a division by zero
    # and a zero indicator (previous all zeros) gives inf, i.e. compute
    assert ti.rel_l1(torch.zeros(3), torch.zeros(3)) == math.inf


def test_online_ratio_refuses_to_skip_before_it_has_learnt_a_ratio():
    state = new(threshold=100.0, rescale=OnlineRatio())
    d = run_through(state)
    assert d[:2] == [False, False]  # step 0, then step 1 (no ratio yet) are computed ...
    assert isinstance(state.rescale.ratio, float)
    assert any(d[2:-1])  # ... and from then on the learnt ratio allows skips


def test_extrapolation_is_linear_in_sigma_bounded_and_safe():
    from comfyui_fewstep.fewstep.caching.state import Cond

    from comfyui_fewstep.fewstep.caching.state import EXTRAPOLATION_LIMIT as k

    c = Cond()
    c.remember(4.0, torch.tensor([4.0]), (1,))
    c.remember(3.0, torch.tensor([3.0]), (1,))  # prediction = sigma: a line
    assert torch.allclose(c.predict(2.5, "extrapolate", "cpu"), torch.tensor([3.0 - 0.5 * k]))  # damped trend
    assert torch.allclose(c.predict(0.0, "extrapolate", "cpu"), torch.tensor([3.0 - k]))  # at most one interval
    assert torch.allclose(c.predict(2.5, "reuse", "cpu"), torch.tensor([3.0]))
    c.remember(3.0, torch.tensor([7.0]), (1,))  # repeated sigma (Heun): plain reuse, no 0/0
    assert torch.allclose(c.predict(2.0, "extrapolate", "cpu"), torch.tensor([7.0]))


def test_a_new_input_shape_drops_the_cache():
    state = new(threshold=100.0)
    run_through(state, x=torch.ones(2, 4))
    state.new_evaluation()
    like = [torch.ones(1, 6)]
    assert state.decide(["c"], 2.0, [like[0]], like) is False


def test_cpu_cache_device_keeps_the_cache_in_ram():
    state = new(threshold=1.0, cache_device="cpu")
    run_through(state)
    assert all(p.device.type == "cpu" for c in state.conds.values() for _, p in c.outputs)


def test_polynomial_rescale_is_numpy_order_and_nonnegative():
    coeffs = ti.PROFILES["flux"].coefficients
    for x in (0.0, 0.05, 0.2, 0.6):
        assert PolynomialRescale(coeffs, "").estimate(x) == pytest.approx(abs(np.polyval(coeffs, x)))
    assert PolynomialRescale(coeffs, "").estimate(math.inf) == math.inf


@pytest.mark.parametrize("args, fragment", [
    (dict(threshold=float("nan")), "threshold"),
    (dict(threshold=-0.1), "threshold"),
    (dict(threshold=float("inf")), "threshold"),
    (dict(start_percent=0.6, end_percent=0.6), "smaller than end_percent"),
    (dict(start_percent=0.8, end_percent=0.2), "smaller than end_percent"),
    (dict(start_percent=1.5), "between 0 and 1"),
    (dict(max_consecutive_skips=-1), "max_consecutive_skips"),
    (dict(model_family="sd9"), "unknown model_family"),
    (dict(cache_device="gpu7"), "cache_device"),
    (dict(calibration="sometimes"), "calibration"),
])
def test_check_names_what_is_wrong(args, fragment):
    full = dict(threshold=0.2, start_percent=0.0, end_percent=1.0, max_consecutive_skips=0, model_family="auto",
                cache_device="auto", calibration="use stored")
    full.update(args)
    problem = check(**full)
    assert problem and fragment in problem


def test_check_accepts_the_defaults_and_missing_linked_values():
    assert check(0.2, 0.0, 1.0, 0, "auto", "auto", "use stored") is None
    assert check(None, None, None, None, None, None, None) is None
