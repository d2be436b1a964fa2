"""Token merging maths on plain tensors (no ComfyUI): ToDo's downsampling, ToMe's seeded
partition, merge/unmerge shapes and round trips, odd grids, batch independence, and the
node's settings check and level selection."""

import pytest
import torch

from comfyui_fewstep.fewstep.tome import merge as tm
from comfyui_fewstep.fewstep.tome.settings import DepthError, Settings, active, check, selected_groups, selected_levels


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("h,w,factor,expected", [(8, 8, 2, (4, 4)), (9, 7, 2, (5, 4)), (64, 64, 3, (22, 22)),
                                                 (1, 1, 2, (1, 1)), (8, 8, 1, (8, 8))])
def test_todo_keeps_a_ceil_sized_grid(h, w, factor, expected):
    x = torch.randn(2, h * w, 5)
    out = tm.downsample_tokens(x, h, w, factor)
    assert tm.downsampled_size(h, w, factor) == expected
    assert out.shape == (2, expected[0] * expected[1], 5)


def test_todo_factor_one_is_the_input_itself_and_factor_two_picks_grid_tokens():
    x = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    assert tm.downsample_tokens(x, 4, 4, 1.0) is x
    out = tm.downsample_tokens(x, 4, 4, 2.0)
    rows = {tuple(t.tolist()) for t in x[0]}
    assert all(tuple(t.tolist()) in rows for t in out[0])  # nearest: real tokens, not blends
    assert torch.equal(out[1] - out[0], torch.full_like(out[0], 48.0))  # per-row, same positions


def test_todo_refuses_tokens_that_are_not_the_grid():
    with pytest.raises(ValueError, match="do not form a 4x4 grid"):
        tm.downsample_tokens(torch.zeros(1, 15, 2), 4, 4, 2.0)


@pytest.mark.parametrize("h, w", [(4, 4), (5, 3)])
def test_a_span_downsamples_only_the_grid_and_keeps_the_tokens_around_it(h, w):
    b, heads, before, after, d = 2, 3, 4, 2, 5
    x = torch.randn(b, heads, before + h * w + after, d, generator=torch.Generator().manual_seed(0))
    out = tm.downsample_span(x, before, h, w, 2.0)
    nh, nw = tm.downsampled_size(h, w, 2.0)
    assert out.shape == (b, heads, before + nh * nw + after, d)
    assert torch.equal(out[:, :, :before], x[:, :, :before]) and torch.equal(out[:, :, -after:], x[:, :, -after:])
    grid = x[:, :, before:before + h * w].reshape(b * heads, h * w, d)
    expected = tm.downsample_tokens(grid, h, w, 2.0).reshape(b, heads, nh * nw, d)
    assert torch.equal(out[:, :, before:before + nh * nw], expected)  # each head and row on its own grid
    assert tm.downsample_span(x, before, h, w, 1.0) is x
    with pytest.raises(ValueError, match="does not fit"):
        tm.downsample_span(x, before + after + 1, h, w, 2.0)


def test_a_key_mask_keeps_the_columns_of_the_kept_keys():
    before, h, w, after = 3, 4, 4, 1
    n = before + h * w + after
    mask = torch.randn(2, 5, n, generator=torch.Generator().manual_seed(1))  # [B, queries, keys]
    keys = torch.arange(n, dtype=torch.float32).reshape(1, 1, n, 1)
    kept = tm.downsample_span(keys, before, h, w, 2.0).flatten().long()  # which keys downsample_span keeps
    assert torch.equal(tm.downsample_key_mask(mask, before, h, w, 2.0), mask[..., kept])
    assert tm.downsample_key_mask(mask, before, h, w, 1.0) is mask
    booleans = mask > 0
    assert torch.equal(tm.downsample_key_mask(booleans, before, h, w, 2.0), booleans[..., kept])


def test_partition_seed_depends_on_seed_level_and_sigma_only():
    a = tm.partition_seed(1, 0, 14.6)
    assert a == tm.partition_seed(1, 0, 14.6)
    assert len({a, tm.partition_seed(2, 0, 14.6), tm.partition_seed(1, 1, 14.6), tm.partition_seed(1, 0, 14.5)}) == 4
    assert 0 <= a < 2**63


@pytest.mark.parametrize("h,w", [(8, 8), (9, 7), (3, 1)])
def test_partition_has_one_destination_per_full_cell(h, w):
    src, dst = tm.random_partition(h, w, gen(3))
    assert dst.numel() == (h // 2) * (w // 2)
    assert torch.equal(torch.sort(torch.cat([src, dst])).values, torch.arange(h * w))
    for i in dst.tolist():  # one destination per 2x2 cell, inside the cut-down grid
        assert i // w < (h // 2) * 2 and i % w < (w // 2) * 2
    cells = {((i // w) // 2, (i % w) // 2) for i in dst.tolist()}
    assert len(cells) == dst.numel()


def test_partition_draws_from_its_generator_not_the_global_rng():
    state = torch.random.get_rng_state()
    a = tm.random_partition(8, 8, gen(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = tm.random_partition(8, 8, gen(5))
    c = tm.random_partition(8, 8, gen(6))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


@pytest.mark.parametrize("h,w,ratio", [(8, 8, 0.5), (9, 7, 0.3), (9, 7, 0.9)])
def test_merge_removes_r_tokens_and_unmerge_puts_every_token_back(h, w, ratio):
    n = h * w
    x = torch.randn(3, n, 6)
    m = tm.bipartite_soft_matching(x, h, w, ratio, gen(1))
    sources = n - (h // 2) * (w // 2)
    assert m.r == min(int(n * ratio), sources)
    merged = m.merge(x)
    assert merged.shape == (3, n - m.r, 6)
    back = m.unmerge(merged)
    assert back.shape == x.shape
    kept = torch.ones(3, n, dtype=torch.bool)
    pos = m.src.expand(3, -1).gather(1, m.src_idx[..., 0])
    kept.scatter_(1, pos, False)
    dst_untouched = torch.zeros(3, n, dtype=torch.bool)
    dst_untouched[:, m.dst] = True
    # tokens never merged come back exactly; merged ones carry their destination's mean
    plain = kept & ~dst_untouched
    assert torch.equal(back[plain], x[plain])
    assert torch.allclose(back.gather(1, pos[..., None].expand(-1, -1, 6)),
                          back[:, m.dst].gather(1, m.dst_idx.expand(-1, -1, 6)))


def test_merge_averages_the_most_similar_pairs():
    # 2x2 grid, one cell: three sources, one destination; the duplicate of dst merges first
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [-1.0, 0.0]]])
    m = tm.bipartite_soft_matching(x, 2, 2, 0.25, gen(0))
    assert m.r == 1
    d = m.dst.item()
    merged_src = m.src[m.src_idx[0, 0, 0]].item()
    sims = torch.nn.functional.cosine_similarity(x[0], x[0, d][None], dim=-1)
    others = [i for i in range(4) if i != d]
    assert merged_src == max(others, key=lambda i: sims[i].item())
    out = m.merge(x)
    assert torch.allclose(out[0, -1], (x[0, d] + x[0, merged_src]) / 2)


def test_ratio_zero_merges_nothing():
    x = torch.randn(2, 64, 4)
    m = tm.bipartite_soft_matching(x, 8, 8, 0.0, gen(0))
    assert m.r == 0 and m.merge(x) is x and m.unmerge(x) is x


def test_each_row_is_merged_as_if_alone():
    """Cond and uncond batched together or apart: the same partition and per-row matching."""
    x = torch.randn(3, 81, 8)
    both = tm.bipartite_soft_matching(x, 9, 9, 0.5, gen(7))
    merged = both.merge(x)
    for i in range(3):
        alone = tm.bipartite_soft_matching(x[i:i + 1], 9, 9, 0.5, gen(7))
        assert torch.equal(alone.merge(x[i:i + 1]), merged[i:i + 1])
        assert torch.equal(alone.unmerge(merged[i:i + 1]), both.unmerge(merged)[i:i + 1])


def test_settings_check_names_the_problem_and_the_range():
    assert check("todo", 0.0, 1.0, 1, 0.0, 1.0, 0) is None
    assert "ratio must be at least 0 and below 1" in check(ratio=1.0)
    assert "ratio" in check(ratio=-0.1) and "ratio" in check(ratio=float("nan"))
    assert "downsample must be at least 1" in check(downsample=0.5)
    assert "max_depth" in check(max_depth=0)
    assert "method must be one of todo, tome" in check(method="hypertile")
    assert "start_percent (0.5) must be smaller than end_percent (0.5)" in check(start_percent=0.5, end_percent=0.5)
    assert "seed" in check(seed=-1)


def test_identity_settings():
    assert Settings("tome", ratio=0.0).is_identity and not Settings("tome", ratio=0.3).is_identity
    assert Settings("todo", downsample=1.0).is_identity and not Settings("todo", downsample=2.0).is_identity


def test_levels_are_picked_from_the_top_among_those_with_attention():
    assert selected_levels([0, 0, 1, 2, 3, 1], 1) == (0,)
    assert selected_levels([1, 2, 2], 1) == (1,)  # SDXL: no attention at level 0
    assert selected_levels([1, 2], 2) == (1, 2)
    with pytest.raises(DepthError, match=r"max_depth 3 is beyond SDXL, which has attention at 2 UNet level\(s\) "
                                         r"\(1, 2\): set max_depth to 1..2"):
        selected_levels([1, 2], 3, "SDXL")


def test_the_percent_window_is_inclusive_in_sigma():
    assert active(5.0, 10.0, 1.0) and active(10.0, 10.0, 1.0) and active(1.0, 10.0, 1.0)
    assert not active(0.5, 10.0, 1.0) and not active(11.0, 10.0, 1.0)


def test_dit_block_groups_are_picked_in_the_order_they_run():
    groups = (("double", 19), ("single", 38))
    assert selected_groups(groups, 1) == ("double",) and selected_groups(groups, 2) == ("double", "single")
    with pytest.raises(DepthError, match=r"max_depth 3 is beyond FLUX.1, which has 2 DiT block group\(s\): double "
                                         r"\(19 blocks\), single \(38 blocks\); set max_depth to 1..2"):
        selected_groups(groups, 3, "FLUX.1")
