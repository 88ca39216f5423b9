"""Every stage's code deps in dvc.yaml cover the modules the stage actually runs.

A module a stage imports (at the top or lazily inside a function, transitively) or that its Hydra
configs instantiate (``_target_: overfitlab...``) but that is missing from the stage's deps would
let `dvc repro` keep stale outputs after a change to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "overfitlab"


def module_file(name: str) -> Path | None:
    """src/overfitlab/a/b.py or .../a/b/__init__.py for ``overfitlab.a.b``."""
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """overfitlab modules a file imports anywhere in it (relative imports resolved)."""
    module = ".".join(("overfitlab", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("overfitlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("overfitlab"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # `from . import runs`
    return {m for m in found if module_file(m)}


def closure(modules: set[str]) -> set[Path]:
    """The files of ``modules``, their packages' __init__ files and everything they import."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            path = module_file(".".join(parts[:i]))
            if path and path not in seen:
                seen.add(path)
                todo += imported_modules(path)
    return seen


def config_targets(paths: list[Path]) -> set[str]:
    """Modules named by ``_target_: overfitlab...`` in the given config files or directories."""
    files = [f for p in paths for f in (sorted(p.rglob("*.yaml")) if p.is_dir() else [p]) if f.exists()]
    targets = set()
    for f in files:
        for dotted in re.findall(r"_target_:\s*(overfitlab[\w.]+)", f.read_text()):
            parts = dotted.split(".")
            while parts and not module_file(".".join(parts)):
                parts.pop()
            targets.add(".".join(parts))
    return targets


def stages() -> dict[str, dict]:
    text = (ROOT / "dvc.yaml").read_text().replace("${project}", ".")
    return yaml.safe_load(text)["stages"]


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in deps)


def test_every_stage_depends_on_the_code_it_runs():
    checked = 0
    for name, stage in stages().items():
        stage = stage.get("do", stage)
        match = re.match(r"python -m (overfitlab[\w.]*)", stage["cmd"])
        if not match:
            continue
        deps = [ROOT / d.replace("${item}", "fashion_mnist") for d in stage["deps"]]
        needed = closure({match.group(1)})
        if any("instantiate(" in f.read_text() for f in needed):  # its configs name code it runs
            needed |= closure(config_targets([d for d in deps if "conf" in d.parts]))
        missing = sorted(str(p.relative_to(ROOT)) for p in needed if not covered(p, deps))
        assert not missing, f"dvc.yaml stage {name} runs but does not depend on: {missing}"
        checked += 1
    assert checked == 4  # prepare, train, collect, report


def test_the_import_scan_finds_lazy_and_relative_imports():
    """The check above can fail: the train stage's closure has its lazy and relative imports."""
    needed = {str(p.relative_to(PACKAGE)) for p in closure({"overfitlab.train"})}
    assert {
        "train.py",
        "runs.py",
        "tracking.py",
        "training/fitting.py",
        "training/module.py",
        "__init__.py",
        "data/controls.py",
    } <= needed
    assert "report.py" not in needed
