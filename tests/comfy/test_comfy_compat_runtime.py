"""One test per reach-in of fewstep/comfy_compat/runtime.py (version, user folder, server,
node outputs), against the real ComfyUI: when a ComfyUI update moves or changes something
FewStep relies on, the failing test names it. Callers reach these as `comfy_compat.<name>`,
so the tests do too."""

from __future__ import annotations

import re

import pytest

from comfyui_fewstep.fewstep import comfy_compat as cc
from comfyui_fewstep.fewstep.comfy_compat import runtime


def test_comfyui_version_is_read(comfy):
    assert re.match(r"^\d+\.\d+\.\d+", cc.comfyui_version()), "comfyui_version.__version__ moved or changed format"


def test_a_newer_comfyui_than_tested_gets_one_log_line_and_still_loads(comfy, monkeypatch, caplog):
    assert runtime._version_tuple(cc.NEWEST_TESTED) is not None
    monkeypatch.setattr(runtime, "comfyui_version", lambda: "99.0.0")  # where note_untested_version looks it up
    with caplog.at_level("INFO", logger="FewStep"):
        line = cc.note_untested_version()
    assert line and "tested on ComfyUI up to " + cc.NEWEST_TESTED in line and "99.0.0" in line
    assert [r.message for r in caplog.records] == [line]
    monkeypatch.setattr(runtime, "comfyui_version", lambda: cc.NEWEST_TESTED)
    assert cc.note_untested_version() is None


def test_user_data_lives_under_comfyuis_user_directory(comfy):
    import folder_paths

    assert cc.user_data_dir("teacache") == cc.user_data_dir() / "teacache"
    assert cc.user_data_dir().parent.resolve() == __import__("pathlib").Path(folder_paths.get_user_directory()).resolve()
    assert cc.legacy_user_file("x.json").parent.name == "default"


def test_without_a_server_events_and_routes_are_no_ops(comfy):
    assert cc.prompt_server() is None
    cc.send_event("fewstep.test", {"a": 1})  # must not raise in-process (bench, CLI)
    assert cc.add_get_route("/fewstep/never", lambda request: None) is False


def test_a_combo_output_is_typed_by_its_option_list(comfy):
    options = ["a", "b"]
    out = cc.combo_output(options=options, display_name="choice", tooltip="t")
    assert out.get_io_type() is options and out.io_type is options
    assert out.as_dict()["display_name"] == "choice" and out.options is options


@pytest.mark.parametrize("node_id", ["FewStepPreset", "FewStepLoraLoader"])
def test_sampler_and_scheduler_outputs_link_into_ksampler(pack_nodes, node_id):
    """ComfyUI's own link check (what POST /prompt runs) accepts them into KSampler's inputs."""
    import nodes
    from comfy_execution.validation import validate_node_input

    names = list(pack_nodes[node_id].RETURN_NAMES)
    types = pack_nodes[node_id].RETURN_TYPES
    ksampler = nodes.NODE_CLASS_MAPPINGS["KSampler"].INPUT_TYPES()["required"]
    for name in ("sampler_name", "scheduler"):
        received = types[names.index(name)]
        assert validate_node_input(received, ksampler[name][0]), f"{node_id}.{name} ({received!r}) is refused by KSampler"
