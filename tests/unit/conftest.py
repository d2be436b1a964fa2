"""The unit tier: plain code only. Nothing here may import ComfyUI, so `make test-unit`
runs in a venv that has only torch, numpy, safetensors and pytest.

The guard fails a test module or test that imports ComfyUI, naming it. It can only see
imports in a process that has not imported ComfyUI yet, which is why `make test` runs
this tier in its own pytest process first.
"""

from __future__ import annotations

import sys

import pytest

COMFY_MODULES = ("comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths")
ACTIVE = not any(name in sys.modules for name in COMFY_MODULES)


def imported_comfy() -> set[str]:
    return {name for name in sys.modules if name.split(".", 1)[0] in COMFY_MODULES} if ACTIVE else set()


def complaint(what: str, found: set[str]) -> str:
    return (f"{what} imported ComfyUI ({', '.join(sorted(found)[:5])}, ...). Unit tests must run without ComfyUI: "
            "test the pure module instead, or move the test to tests/comfy.")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    before = imported_comfy()
    outcome = yield
    found = imported_comfy() - before
    if found:
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = complaint(str(collector.nodeid or collector.path), found)


@pytest.fixture(autouse=True)
def no_comfy_import(request):
    before = imported_comfy()
    yield
    found = imported_comfy() - before
    if found:
        pytest.fail(complaint(request.node.nodeid, found), pytrace=False)
