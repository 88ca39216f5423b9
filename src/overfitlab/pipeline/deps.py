"""Each stage's code deps, computed, never hand-listed: the import closure of the stage's module
(``imports.closure``) plus the modules its configs instantiate (``_target_:``) and the package data
of every package in it (``analysis/templates/*.j2``), so a new import only needs a rerun of the
generator (``python -m overfitlab.pipeline``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import imports

ROOT = imports.SRC.parent  # the project: src/, conf/, params.yaml, studies/


@dataclass(frozen=True)
class Code:
    """What a stage runs: its modules, and the configs whose ``_target_`` it instantiates."""

    modules: tuple[str, ...]
    instantiates: tuple[str, ...] = ()  # conf files or directories, relative to the project
    includes: tuple[str, ...] = ()  # stages whose code this stage's outputs depend on as well


CODE = {
    # dataset.build (conf/dataset/textures.yaml) is instantiated for whichever dataset ${item} is.
    "prepare": Code(("overfitlab.prepare",), ("conf/prepare.yaml", "conf/image_folder", "conf/dataset")),
    # The models, the optimizer, Hydra's sweep callbacks (conf/train.yaml) and the launcher.
    "train": Code(
        ("overfitlab.train",),
        ("conf/train.yaml", "conf/model", "conf/optimizer", "conf/trainer", "conf/hydra/launcher"),
    ),
    # collect hashes each run with the code that decides its numbers (runs.py, the model a run's
    # config names) to tell a current run from a stale one: that code is the train stage's, so it
    # is a dep of collect too. collect composes the runs' configs but instantiates nothing.
    "collect": Code(("overfitlab.collect",), includes=("train",)),
    "report": Code(("overfitlab.report",)),
}


def source_file(name: str) -> Path | None:
    """The file of module ``name`` under src/ (``overfitlab...`` or another top-level, e.g. hydra_plugins)."""
    base = imports.SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _yaml_files(paths: Iterable[Path]) -> list[Path]:
    return [f for p in paths for f in (sorted(Path(p).rglob("*.yaml")) if Path(p).is_dir() else [Path(p)])]


def _targets(node) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield value
            else:
                yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def config_targets(paths: Iterable[Path]) -> set[str]:
    """Modules under src/ named by ``_target_:`` in the config files or directories ``paths``.

    ``overfitlab.training.models.mlp.MLP`` names the module ``overfitlab.training.models.mlp``;
    targets outside src/ (``torch.optim.Adam``) are left out.
    """
    found = set()
    for path in _yaml_files(paths):
        for dotted in _targets(yaml.safe_load(path.read_text())):
            parts = dotted.split(".")
            while parts and not source_file(".".join(parts)):
                parts.pop()
            if parts:
                found.add(".".join(parts))
    return found


def _top_package(path: Path) -> Path:
    """The outermost regular package (a directory with ``__init__.py``) holding ``path``."""
    for directory in reversed(path.relative_to(imports.SRC).parents[:-1]):
        if (imports.SRC / directory / "__init__.py").is_file():
            return imports.SRC / directory
    return path


def _ignored(path: Path, base: Path) -> bool:
    """Not code or package data: bytecode, hidden files (editors' temp files), the py.typed marker."""
    parts = path.relative_to(base).parts
    return (
        path.suffix == ".pyc"
        or path.name == "py.typed"
        or any(p.startswith(".") or p == "__pycache__" for p in parts)
    )


def _files_under(directory: Path) -> set[Path]:
    return {f for f in directory.rglob("*") if f.is_file() and not _ignored(f, directory)}


def package_data(package: Path) -> set[Path]:
    """Non-Python files of a package directory, not of its subpackages (analysis/templates/*.j2)."""
    found = set()
    for f in _files_under(package):
        if f.suffix == ".py":
            continue
        between = f.relative_to(package).parents[:-1]  # the directories between package and f
        if not any((package / d / "__init__.py").is_file() for d in between):
            found.add(f)
    return found


def code_files(code: Code) -> set[Path]:
    """Every file a stage runs or reads as package data: the closure of its modules and targets."""
    modules = set(code.modules) | config_targets(ROOT / p for p in code.instantiates)
    ours = sorted(m for m in modules if imports.module_file(m))
    files = set(imports.closure(ours))
    for stage in code.includes:
        files |= code_files(CODE[stage])
    for module in sorted(modules - set(ours)):  # a plugin (hydra_plugins...): its whole package
        package = _top_package(source_file(module))
        plugin = {f for f in _files_under(package) if f.suffix == ".py"} if package.is_dir() else {package}
        files |= plugin
        for f in sorted(plugin):
            files |= set(imports.closure(sorted(imports.imported_modules(f))))
    for init in [f for f in files if f.name == "__init__.py"]:
        files |= package_data(init.parent)
    return files


def as_deps(files: set[Path]) -> list[str]:
    """Project-relative paths, sorted; a package directory all of whose files are needed is listed whole."""
    packages = sorted({f.parent for f in files if f.name == "__init__.py"}, key=lambda d: (len(d.parts), d))
    listed: set[Path] = set(files)
    whole: list[Path] = []
    for package in packages:
        if any(w in package.parents for w in whole):
            continue
        inside = _files_under(package)
        if inside <= files:
            whole.append(package)
            listed = {f for f in listed if package not in f.parents} | {package}
    return sorted(p.relative_to(ROOT).as_posix() for p in listed)


def code_deps(stage: str) -> list[str]:
    """The code deps of ``stage`` (CODE), project-relative (``src/overfitlab/data``, ``.../runs.py``)."""
    return as_deps(code_files(CODE[stage]))
