"""The OmegaConf resolvers ``conf/`` uses, registered on import (``study.py`` imports this module, and
every entry point imports ``study.py``). Kept out of the package ``__init__`` so that the numerics'
code hash, which covers every package ``__init__`` on its import path, does not cover them."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf


def _sweep_list(values, key: str = "study.seeds", default=None) -> str:
    """Render a list from params.yaml as a Hydra sweep (``0,1,2``); an empty list is an error.

    A missing list (None) sweeps the single ``default`` value. Hydra resolves this while
    building its sweeper, where an exception becomes a long traceback; the user gets the
    one-line error and exit status 2 instead.
    """
    items = list(values) if values is not None else ([] if default is None else [default])
    if not items:
        print(
            f"error: {key} is empty (params.yaml); list at least one value, e.g. {key}: [0, 1, 2]",
            file=sys.stderr,
        )
        sys.exit(2)
    return ",".join(str(v) for v in items)


def _run_dir(runs_root, dataset, model, seed, *, _root_) -> str:
    """A run's directory (layout: ``runs.run_dir``), with the run's axis values read from its config."""
    from .axes import run_values
    from .runs import run_dir

    return str(run_dir(runs_root, dataset, model, run_values(_root_), seed))


def _prepared_dir(prepared_root, dataset, *, _root_) -> str:
    """The prepared data variant a run reads (one per value of a ``prepare.*`` axis)."""
    from .axes import prepared_dir, run_values

    return str(prepared_dir(prepared_root, dataset, run_values(_root_)))


def _project_root() -> str:
    """The project's root (``conf/``, ``.venv/``) from the project or a study directory: launcher presets."""
    from .project import project_root

    return str(project_root())


def _repeat(value, times) -> list:
    """``[value] * times``: e.g. a searched number of hidden layers of one searched width."""
    return [value] * int(times)


for _name, _resolver in {
    "sweep": _sweep_list,
    "repeat": _repeat,
    "run_dir": _run_dir,
    "prepared_dir": _prepared_dir,
    "project_root": _project_root,
}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
