"""The frontier chart's selection: which points survive and which win a budget."""

from comfyui_fewstep.bench.frontier import Point, best_within, pareto


def pt(method, kind, evals, psnr, provider="core"):
    return Point(method, f"{evals}", provider, kind, evals, psnr, 1.0)


POINTS = [pt("euler (core)", "fewer steps", 4, 33.0), pt("euler (core)", "fewer steps", 8, 43.0),
          pt("EasyCache (core)", "step cache", 28, 61.0), pt("EasyCache (core)", "step cache", 20, 42.0),
          pt("FewStep Distill student", "distilled", 4, 39.8, "fewstep"),
          pt("FewStep Distill student", "distilled", 2, 20.4, "fewstep")]


def test_pareto_keeps_only_points_nothing_beats_on_cost_and_quality():
    assert [(p.method, p.evals) for p in pareto(POINTS)] == [
        ("FewStep Distill student", 2), ("FewStep Distill student", 4), ("euler (core)", 8), ("EasyCache (core)", 28)]


def test_best_within_a_budget_respects_the_budget_and_the_filter():
    assert best_within(POINTS, 4).method == "FewStep Distill student"
    assert best_within(POINTS, 3.9).psnr == 20.4
    assert best_within(POINTS, 20, kind="step cache").evals == 20
    assert best_within(POINTS, 1) is None
    assert best_within(POINTS, 30, provider="fewstep").psnr == 39.8
