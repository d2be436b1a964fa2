"""The running ComfyUI as a whole: its version, the pack's user folder, the PromptServer and
node outputs, and the error every reach-in raises (ComfyCompatError, incompatible). The
other compat submodules import their shared helpers from here; this one imports none of them.

Same rule as the whole package: one small function per reach-in, each with the ComfyUI
version it was checked against ("0.3.75" = the runtime the tests use).
"""

from __future__ import annotations

import logging
from pathlib import Path

import folder_paths


log = logging.getLogger("FewStep")
USER_FOLDER = "fewstep"  # <ComfyUI user directory>/fewstep holds all of the pack's user data


class ComfyCompatError(RuntimeError):
    """This ComfyUI lacks something FewStep relies on; the message names the fix."""


def comfyui_version() -> str:
    """0.3.75: `comfyui_version.__version__` at the ComfyUI root."""
    try:
        import comfyui_version

        return str(comfyui_version.__version__)
    except ImportError:
        return "unknown"


# The newest ComfyUI `make compat` ran every tier on (README "Compatibility").
NEWEST_TESTED = "0.33.0"


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in version.split("+")[0].split("-")[0].split("."))
    except ValueError:
        return None


def note_untested_version() -> str | None:
    """Log one line when ComfyUI is newer than the newest version FewStep was tested on
    (never refuses to load: capability probes decide what works, not version strings)."""
    running, tested = _version_tuple(comfyui_version()), _version_tuple(NEWEST_TESTED)
    if running is None or running <= tested:
        return None
    line = (f"FewStep was tested on ComfyUI up to {NEWEST_TESTED}; this is {comfyui_version()}. "
            "If something fails, update FewStep or report it.")
    log.info(line)
    return line


def incompatible(what: str) -> ComfyCompatError:
    return ComfyCompatError(
        f"FewStep cannot use {what} in this ComfyUI ({comfyui_version()}). Update ComfyUI and FewStep to their "
        "latest releases; if it persists, report it with this message.")


# ---- user data ----------------------------------------------------------------------------

def user_data_dir(*parts: str) -> Path:
    """<user dir>/fewstep/...; 0.3.75: folder_paths.get_user_directory()."""
    return Path(folder_paths.get_user_directory(), USER_FOLDER, *parts)


def legacy_user_file(name: str) -> Path:
    """Where releases before the user folder kept files: <user dir>/default/<name>."""
    return Path(folder_paths.get_user_directory(), "default", name)


# ---- server -------------------------------------------------------------------------------

def prompt_server():
    """The running PromptServer, or None in-process (tests, bench, CLI). 0.3.75."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def send_event(event: str, data: dict) -> None:
    """Send a websocket event to the client that queued the prompt; no-op without a server.
    0.3.75: PromptServer.instance.send_sync(event, data, sid) and .client_id."""
    server = prompt_server()
    if server is not None:
        server.send_sync(event, data, getattr(server, "client_id", None))


def add_get_route(path: str, handler) -> bool:
    """Add GET `path` once (also under /api); False without a server. 0.3.75:
    PromptServer.instance.routes is the aiohttp RouteTableDef added to the app at start."""
    server = prompt_server()
    if server is None:
        return False
    if not any(getattr(r, "path", None) == path for r in server.routes):
        server.routes.get(path)(handler)
    return True


# ---- node outputs -------------------------------------------------------------------------

def _option_list_combo_output_class():
    """io.Combo.Output whose link type is its option list (what V1 list inputs such as
    KSampler's sampler_name accept)."""
    from comfy_api.latest import io

    class OptionListComboOutput(io.Combo.Output):
        @property
        def io_type(self):
            return self.options

        def get_io_type(self):
            return self.options

    return OptionListComboOutput


def combo_output(options: list, display_name: str, tooltip: str):
    """A combo output that links into V1 nodes' list-typed inputs (KSampler's
    sampler_name/scheduler). 0.3.75: io.Combo.Output's type is its option list; from
    0.8.0 (upstream #11345) it is "COMBO", which V1 list inputs reject ("Return type
    mismatch between linked nodes"). Capability probe: when io.Combo.Output does not
    already type itself by its options, a subclass that does is used (execution's
    validate_node_input compares the lists, and accepts a list against a v3 "COMBO" input)."""
    from comfy_api.latest import io

    plain = io.Combo.Output(display_name=display_name, options=options, tooltip=tooltip)
    if plain.get_io_type() is options:
        return plain
    out = _option_list_combo_output_class()(display_name=display_name, options=options, tooltip=tooltip)
    if out.get_io_type() is not options:
        raise incompatible("combo outputs typed by their option list (io.Combo.Output.io_type)")
    return out
