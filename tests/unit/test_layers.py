"""fewstep/ keeps its layers: only the modules in HOOK_MODULES reach ComfyUI, by importing
it or a hook module, at any level (a function-local import counts). A listed name may be a
package (a folder with __init__.py, such as comfy_compat/); its submodules are listed too.
Read from the source, so the check needs no ComfyUI."""

import ast

from comfyui_fewstep.fewstep import HOOK_MODULES
from comfyui_fewstep.tools import comfy_runtime as rt

COMFY_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "nodes", "server",
                 "execution", "node_helpers", "latent_preview"}
FEWSTEP = rt.REPO_ROOT / "fewstep"


def module_parts(path, root=FEWSTEP):
    """fewstep/lora/apply.py -> ["lora", "apply"]; fewstep/lora/__init__.py -> ["lora"]."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def module_path(name, root=FEWSTEP):
    """"lora.apply" -> fewstep/lora/apply.py; a package -> its __init__.py."""
    base = root.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def comfy_reaches(path, root=FEWSTEP, hooks=HOOK_MODULES):
    """Each import in the file of ComfyUI or of a FewStep hook module, with its line. For
    trainers/, `hooks` also names fewstep's hook modules ("fewstep.<module>")."""
    parts = module_parts(path, root)
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found += [f"{n} (line {node.lineno})" for n in names if n.split(".")[0] in COMFY_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in COMFY_MODULES:
                found.append(f"{node.module} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for target in [base] + [base + [alias.name] for alias in node.names]:
                if ".".join(target) in hooks:
                    found.append(f"hook module {'.'.join(target)} (line {node.lineno})")
    return found


def test_only_hook_modules_reach_comfyui():
    offenders = {".".join(module_parts(p)) or "fewstep": comfy_reaches(p) for p in sorted(FEWSTEP.rglob("*.py"))
                 if ".".join(module_parts(p)) not in HOOK_MODULES}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_every_listed_hook_module_exists_and_reaches_comfyui():
    # A stale entry would let a pure module start importing ComfyUI under an old name.
    for name in HOOK_MODULES:
        path = module_path(name)
        assert path.is_file(), f"HOOK_MODULES names {name}, but {path} does not exist"
        assert comfy_reaches(path), f"{name} is listed as a hook module but reaches no ComfyUI"


def test_the_check_sees_function_local_and_relative_imports(tmp_path):
    source = tmp_path / "lora" / "m.py"
    source.parent.mkdir()
    source.write_text("import torch\nfrom .files import x\n\ndef f():\n    import comfy.model_management as mm\n"
                      "    from folder_paths import y\n    from .. import comfy_compat\n    from .apply import z\n")
    assert comfy_reaches(source, root=tmp_path) == ["comfy.model_management (line 5)", "folder_paths (line 6)",
                                     "hook module comfy_compat (line 7)", "hook module lora.apply (line 8)"]


def test_the_check_sees_a_hook_package_and_imports_of_its_submodules(tmp_path):
    package = tmp_path / "compat"
    package.mkdir()
    (package / "__init__.py").write_text("from .samplers import f\n")
    (package / "samplers.py").write_text("import comfy.samplers\n")
    (tmp_path / "pure.py").write_text("import torch\nfrom .compat.samplers import f\n")
    (tmp_path / "other.py").write_text("from .compat import samplers\n")
    hooks = ("compat", "compat.samplers")
    assert module_path("compat", tmp_path) == package / "__init__.py"
    assert module_path("compat.samplers", tmp_path) == package / "samplers.py"
    assert comfy_reaches(package / "__init__.py", tmp_path, hooks) == ["hook module compat.samplers (line 1)"]
    assert comfy_reaches(tmp_path / "pure.py", tmp_path, hooks) == ["hook module compat.samplers (line 2)"]
    assert comfy_reaches(tmp_path / "other.py", tmp_path, hooks) == ["hook module compat (line 1)",
                                                                    "hook module compat.samplers (line 1)"]


TRAINERS = rt.REPO_ROOT / "trainers"


def test_the_trainer_engine_keeps_the_same_layers():
    from comfyui_fewstep.trainers import HOOK_MODULES as TRAINER_HOOKS

    hooks = set(TRAINER_HOOKS) | {f"fewstep.{name}" for name in HOOK_MODULES} | {"tools.comfy_runtime"}
    offenders = {".".join(module_parts(p, TRAINERS)): comfy_reaches(p, TRAINERS, hooks)
                 for p in sorted(TRAINERS.rglob("*.py")) if ".".join(module_parts(p, TRAINERS)) not in TRAINER_HOOKS}
    assert {name: found for name, found in offenders.items() if found} == {}
    for name in TRAINER_HOOKS:
        assert comfy_reaches(module_path(name, TRAINERS), TRAINERS, hooks), f"{name} is listed but reaches no ComfyUI"
