"""tools/workflows.link_accepted follows ComfyUI's link rule (comfy_execution/validation.py),
including the case that broke FewStep's combo outputs on ComfyUI 0.8.0."""

from comfyui_fewstep.tools.workflows import link_accepted

SAMPLERS = ["euler", "lcm", "tcd"]


def test_option_list_output_links_into_a_v1_list_input_and_a_v3_combo_input():
    assert link_accepted(list(SAMPLERS), SAMPLERS)
    assert link_accepted(SAMPLERS, "COMBO")


def test_a_combo_typed_output_is_refused_by_a_v1_list_input():
    assert not link_accepted("COMBO", SAMPLERS)
    assert not link_accepted(["euler"], SAMPLERS)  # another list is another type


def test_plain_types_any_and_unions():
    assert link_accepted("MODEL", "MODEL") and not link_accepted("MODEL", "CLIP")
    assert link_accepted("*", "MODEL") and link_accepted("INT", "*")
    assert link_accepted("INT,FLOAT", "FLOAT") and not link_accepted(SAMPLERS, "STRING")
