"""Which files of the package a module runs: its import closure, read from the code, never hand-listed.

Two contracts are derived from it: a run's code hash covers the closure of the numerics path
(``identity.numerics_code``), and each DVC stage's code deps are the closure of its entry module
(``pipeline/deps.py``). A new import therefore extends both by itself. Imports are read from the
syntax tree, function-level ones included; ``importlib``/``instantiate`` targets are added by the
callers that know them (a model family named in a config's ``_target_``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # src/overfitlab
SRC = PACKAGE.parent


def module_file(name: str, src: Path = SRC) -> Path | None:
    """``src/overfitlab/a/b.py`` or ``.../a/b/__init__.py`` for ``overfitlab.a.b`` (None: not ours).

    ``src`` is the directory holding the package (another copy of it in the tests)."""
    parts = name.split(".")
    if parts[0] != "overfitlab":
        return None
    base = Path(src).joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, src: Path = SRC) -> str:
    """``overfitlab.a.b`` for ``src/overfitlab/a/b.py`` (and for ``.../a/b/__init__.py``)."""
    parts = Path(path).resolve().relative_to(Path(src).resolve()).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, src: Path = SRC) -> set[str]:
    """The package's modules a file imports anywhere in it (relative imports resolved)."""
    path = Path(path).resolve()
    module = module_name(path, src)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
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
    return {m for m in found if module_file(m, src)}


def closure(modules, src: Path = SRC, outside=()) -> list[Path]:
    """The files of ``modules``, their packages' ``__init__`` files and everything they import, sorted;
    modules under the ``outside`` prefixes are left out (and not followed)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if any(name == o or name.startswith(o + ".") for o in outside):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            path = module_file(".".join(parts[:i]), src)
            if path and path not in seen:
                seen.add(path)
                todo += imported_modules(path, src)
    return sorted(seen)


def cycles() -> list[list[str]]:
    """Import cycles between the package's modules, function-level imports counted (each once)."""
    graph = {module_name(p): imported_modules(p) for p in sorted(PACKAGE.rglob("*.py"))}
    found, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node) :]
            if frozenset(cycle) not in done:
                done.add(frozenset(cycle))
                found.append(cycle)
            return
        for nxt in sorted(graph.get(node, ())):
            if nxt != node and not node.startswith(nxt + "."):  # a module's own package init is no cycle
                visit(nxt, [*stack, node])

    for start in graph:
        visit(start, [])
    return found
