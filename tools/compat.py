"""`make compat`: run the test tiers against every ComfyUI tree in tools/compat_trees.toml
and write the results table into the README's "Compatibility" section.

Stdlib only (it runs each tree's own Python; it imports neither ComfyUI nor torch).
Results accumulate in tools/compat_results.json, one entry per (tree, tier), so a single
tree or tier can be rerun (`--tree 0.9.2 --tier e2e`) without losing the others' rows.
Each tier runs under `nice`, one at a time: the machines this runs on are shared.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

if __package__:
    from . import comfy_runtime as rt
else:  # run as a script (make compat): tools/ is its only sys.path entry
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import comfy_runtime as rt  # noqa: E402

CONFIG = rt.REPO_ROOT / "tools" / "compat_trees.toml"
RESULTS = rt.REPO_ROOT / "tools" / "compat_results.json"
README = rt.REPO_ROOT / "README.md"
TIERS = {"comfy": "in-process", "e2e": "server", "browser": "browser"}
BEGIN, END = "<!-- compat:begin (tools/compat.py writes this) -->", "<!-- compat:end -->"


def log(msg: str) -> None:
    print(f"[compat] {msg}", flush=True)


def _path(value: str) -> Path:
    expanded = os.path.expanduser(os.path.expandvars(value))
    if "$" in expanded:
        raise SystemExit(f"{CONFIG.name}: {value!r} uses an unset variable; set it (e.g. FEWSTEP_COMPAT_DIR) and rerun")
    p = Path(expanded)
    return p if p.is_absolute() else rt.REPO_ROOT / p


def load_trees(config: Path = CONFIG) -> list[dict]:
    trees = tomllib.loads(config.read_text()).get("tree", [])
    for t in trees:
        missing = {"name", "comfyui", "python"} - set(t)
        if missing:
            raise SystemExit(f"{config.name}: tree {t.get('name', '?')!r} lacks {sorted(missing)}")
    return trees


def _run_python(python: Path, code: str, env: dict) -> str:
    out = subprocess.run([str(python), "-P", "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return out.stdout.strip() if out.returncode == 0 else ""


def tree_env(tree: dict) -> dict:
    """The tree's ComfyUI via COMFYUI_PATH; the pack importable from .runtime/pkgroot."""
    env = dict(os.environ, COMFYUI_PATH=str(_path(tree["comfyui"])))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(rt.PKG_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def describe(tree: dict) -> dict:
    """ComfyUI version (from the tree) and frontend version (installed in its Python)."""
    root, python = _path(tree["comfyui"]), _path(tree["python"])
    info = {"name": tree["name"], "source": tree.get("source", ""), "commit": tree.get("commit", "")}
    if not rt.is_comfyui_tree(root):
        return info | {"missing": f"no ComfyUI tree at {root}"}
    if not python.exists():
        return info | {"missing": f"no Python at {python}"}
    version_file = root / "comfyui_version.py"
    info["comfyui"] = "unknown"
    if version_file.exists():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                info["comfyui"] = line.split("=", 1)[1].strip().strip("\"'")
    frontend = "import importlib.metadata as m; print(m.version('comfyui-frontend-package'))"
    info["frontend"] = _run_python(python, frontend, tree_env(tree)) or "not installed"
    return info


def junit_counts(path: Path) -> dict:
    """passed/failed/errors/skipped from a pytest --junitxml file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s
              if c.find("failure") is not None or c.find("error") is not None]
    return {"passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
            "failed": total["failures"], "errors": total["errors"], "skipped": total["skipped"], "failing": failed}


def run_tier(tree: dict, tier: str, pytest_args: list[str]) -> dict:
    python = _path(tree["python"])
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = ["nice", str(python), "-P", "-m", "pytest", f"tests/{tier}", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}", *pytest_args]
        log(f"{tree['name']}: {' '.join(cmd[1:])}")
        proc = subprocess.run(cmd, cwd=rt.REPO_ROOT, env=tree_env(tree))
        if not xml.exists():
            return {"status": f"pytest exited {proc.returncode} without results"}
        return junit_counts(xml) | {"status": "ok" if proc.returncode == 0 else f"exit {proc.returncode}"}


def _cell(result: dict | None) -> str:
    if result is None:
        return "not run"
    if "passed" not in result:
        return result.get("status", "?")
    bad = result["failed"] + result["errors"]
    text = f"{result['passed']} passed" + (f", **{bad} failed**" if bad else "")
    text += f", {result['skipped']} skipped" if result["skipped"] else ""
    return text + (" (run interrupted: partial)" if result.get("status") == "exit 2" else "")


def table(results: dict, trees: list[dict]) -> str:
    lines = ["| ComfyUI | commit / source | frontend | " + " | ".join(TIERS.values()) + " | tested |",
             "|---|---|---|" + "---|" * len(TIERS) + "---|"]
    notes = []
    for tree in trees:
        entry = results.get(tree["name"])
        if entry is None:
            if tree.get("note"):
                notes.append(f"- {tree['name']} (no stored results): {' '.join(tree['note'].split())}")
            continue
        info = entry["info"]
        if "missing" in info:
            notes.append(f"- {tree['name']}: not tested here ({info['missing']}).")
            continue
        commit = info.get("commit", "")
        commit = f"`{commit[:10]}`" if len(commit) == 40 else commit
        tiers = entry.get("tiers", {})
        dates = sorted(r["date"] for r in tiers.values() if "date" in r)
        lines.append(f"| {info['comfyui']} | {commit} ({info['source']}) | {info['frontend']} | "
                     + " | ".join(_cell(tiers.get(t)) for t in TIERS) + f" | {dates[-1] if dates else ''} |")
        for tier, r in tiers.items():
            for name in r.get("failing", []):
                notes.append(f"- {info['comfyui']}, {TIERS[tier]}: `{name}` failed.")
        if tree.get("note"):
            notes.append(f"- {info['comfyui']}: {' '.join(tree['note'].split())}")
    return "\n".join(lines + ([""] + notes if notes else []))


def write_readme(text: str, readme: Path = README) -> None:
    body = readme.read_text()
    if body.count(BEGIN) != 1 or body.count(END) != 1:
        raise SystemExit(f"{readme.name} needs the markers once each: {BEGIN} ... {END}")
    head, rest = body.split(BEGIN)
    new = head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1]
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, readme)


def store(name: str, info: dict, tier: str | None = None, result: dict | None = None) -> None:
    """Merge one tier's result into RESULTS as it is on disk now (another `make compat`
    may have written other trees meanwhile); temp file then rename."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    entry = results.setdefault(name, {"tiers": {}})
    entry["info"] = info
    if tier is not None:
        entry.setdefault("tiers", {})[tier] = result
    tmp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", help="only this tree (by name); repeatable")
    ap.add_argument("--tier", action="append", choices=list(TIERS), help="only this tier; repeatable")
    ap.add_argument("--table-only", action="store_true", help="rewrite the README table from stored results")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)
    trees = load_trees()
    if not args.table_only:
        for tree in trees:
            if args.tree and tree["name"] not in args.tree:
                continue
            info = describe(tree)
            if "missing" in info:
                log(f"{tree['name']}: skipped, {info['missing']}")
                store(tree["name"], info)
                continue
            for tier in args.tier or list(TIERS):
                r = run_tier(tree, tier, args.pytest_args) | {"date": _dt.date.today().isoformat()}
                log(f"{tree['name']} {tier}: {_cell(r)}")
                store(tree["name"], info, tier, r)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    write_readme(table(results, trees))
    log(f"README table written from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
