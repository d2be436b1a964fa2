"""The indicator table: published coefficients as upstream TeaCache / ComfyUI-TeaCache ship
them, and the safe relative-L1 change."""

import math

import pytest
import torch

from comfyui_fewstep.fewstep.caching import profiles as ti

# Upstream values (numpy poly1d order) as ComfyUI-TeaCache ships them: the
# SUPPORTED_MODELS_COEFFICIENTS table of welltop-cn/ComfyUI-TeaCache's nodes.py (its key
# "lumina_2" is our "lumina2"), checked against that file in December 2026, independently
# of the sources profiles.py was written from. A typo in profiles.py would silently
# mis-scale every skip decision of that family.
UPSTREAM = {
    "flux": (4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01),
    "flux-kontext": (-1.04655119e+03, 3.12563399e+02, -1.69500694e+01, 4.10995971e-01, 3.74537863e-02),
    "ltxv": (2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03),
    "lumina2": (-8.74643948e+02, 4.66059906e+02, -7.51559762e+01, 5.32836175e+00, -3.27258296e-02),
    "hunyuan_video": (7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02),
    "wan2.1_t2v_1.3B": (2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01),
    "wan2.1_t2v_14B": (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404),
    "wan2.1_i2v_480p_14B": (-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01),
    "wan2.1_i2v_720p_14B": (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
    "wan2.1_t2v_1.3B_ret_mode": (-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02),
    "wan2.1_t2v_14B_ret_mode": (-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01),
    "wan2.1_i2v_480p_14B_ret_mode": (2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01,
                                     1.32517977e-01),
    "wan2.1_i2v_720p_14B_ret_mode": (8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01,
                                     -4.17769401e-02),
}


def test_every_published_profile_has_an_upstream_entry():
    assert {name for name, p in ti.PROFILES.items() if p.published} == set(UPSTREAM)


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_published_coefficients_are_the_upstream_ones(name):
    assert ti.PROFILES[name].coefficients == UPSTREAM[name]


def test_every_choice_has_a_source_and_generic_has_no_published_fit():
    assert ti.FAMILY_CHOICES[0] == ti.AUTO and ti.GENERIC in ti.FAMILY_CHOICES
    for p in ti.PROFILES.values():
        assert p.source in (ti.BLOCK0, ti.TIMESTEP_EMBEDDING, ti.MODEL_INPUT)
        assert p.published == (p.name != ti.GENERIC)
    assert ti.PROFILES["wan2.1_t2v_14B_ret_mode"].source == ti.BLOCK0  # e0 = first block's input
    assert ti.PROFILES["wan2.1_t2v_14B"].source == ti.TIMESTEP_EMBEDDING  # e


def test_rel_l1():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])
    assert ti.rel_l1(a, b) == pytest.approx(0.5)
    assert ti.rel_l1(a, None) == math.inf
    assert ti.rel_l1(a, torch.zeros(2)) == math.inf
    assert ti.rel_l1(a, torch.ones(3)) == math.inf
    assert ti.rel_l1(a, torch.tensor([float("nan"), 1.0])) == math.inf


def test_per_uuid_split():
    parts = ti.per_uuid(torch.arange(6).reshape(6, 1), 2)
    assert [p.flatten().tolist() for p in parts] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError):
        ti.per_uuid(torch.zeros(3, 1), 2)
