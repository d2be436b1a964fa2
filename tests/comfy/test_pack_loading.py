"""ComfyUI's own custom-node loader imports the pack by path from any folder name.

Runs in a subprocess so this test process keeps exactly one copy of the pack.
"""

import json
import subprocess
import sys

SCRIPT = r"""
import asyncio, json, sys
from comfyui_fewstep.tools import comfy_runtime as rt
rt.import_comfy_for_library_use()
import nodes
ok = asyncio.run(nodes.load_custom_node(sys.argv[1]))
pack = [m for m in sys.modules if m.startswith(sys.argv[1].replace(".", "_x_"))]
print(json.dumps({
    "ok": ok,
    "fewstep": sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("FewStep")),
    "comfy_nodes_module": nodes.__file__,
    "web_dirs": nodes.EXTENSION_WEB_DIRS,
    "pack_modules": pack,
}))
"""


def test_comfyui_loader_imports_the_pack_from_an_odd_folder_name(tmp_path, pack_nodes):
    from comfyui_fewstep.tools import comfy_runtime as rt

    folder = tmp_path / "custom_nodes" / "FewStep.dev copy-2"
    folder.parent.mkdir()
    folder.symlink_to(rt.REPO_ROOT, target_is_directory=True)
    proc = subprocess.run([sys.executable, "-P", "-c", SCRIPT, str(folder)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"], proc.stderr[-3000:]
    assert report["fewstep"] == sorted(pack_nodes)
    # ComfyUI's own `nodes` module is still ComfyUI's, not the pack's nodes/ package
    assert report["comfy_nodes_module"].startswith(str(rt.find_comfyui()))
    assert report["web_dirs"]["FewStep.dev copy-2"] == str(folder / "web")
    # the pack's submodules live under the path-derived name (relative imports only)
    assert any(m.endswith(".nodes") for m in report["pack_modules"])
