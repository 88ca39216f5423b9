"""Study axes: the one home of their rules.

A study is datasets x models x axes x seeds. An axis is any config key of a run with a list of
values (``params.yaml``: ``study.axes: {train.lr: [0.01, 0.1], train.label_noise: [0, 0.2]}``).
Every axis is handled by the code below, whatever the key:

* the train stage's sweep gets one override per axis (``sweep_overrides``);
* a run's directory shows its axis values (``dir_parts``: ``runs/<data>/<model>/lr=0.1/seed=0``);
* ``collect`` enumerates the same combinations (``combinations``) and adds one column per axis
  (``column``) to ``runs.csv`` and ``epochs.parquet``; the report groups and plots by them;
* axes on ``prepare.*`` make one prepared data variant per value (``prepared_dir``).

A key the command line sets that is not a study axis (``train.lr=0.01,100`` in a sweep, or
``train.epochs=5`` for one run) is an axis of that command (``COMMAND_LINE_AXES_ENV``): its runs go
to directories of their own, so they never share one with each other or replace the study's runs.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from .errors import require

FIXED = ("dataset", "model", "seed")  # axes of their own: study.datasets, study.models, study.seeds
COMMAND_LINE_AXES_ENV = "OVERFITLAB_COMMAND_LINE_AXES"  # keys the command line sets (study.preflight)
# Keys the command line may set without making an axis: where files and logs go, and the data's
# definition (``dataset.*``, ``prepare.*``: the prepare stage writes one prepared dataset, and the
# data version is part of a run's identity; a data-size axis is declared in study.axes, which
# prepares one variant per value). The speed-only trainer settings are not axes either
# (``is_run_key``'s ``speed_only``: SPEED_ONLY_TRAINER_KEYS).
# Neither in a run's identity (identity.py) nor an axis: speed-only settings (tested to leave the
# numbers unchanged), the thread count and seed vectorizing, which change only the order of float
# sums (recorded in `device`), and the per-epoch checkpoint (a resumed run's numbers are an
# uninterrupted one's: tests/test_resume.py).
SPEED_ONLY_TRAINER_KEYS = (
    "progress_bar",
    "examples_per_step",
    "vectorize_seeds",
    "threads",
    "checkpoint",
    "checkpoint_every_s",
    "keep_checkpoint",
)


NOT_AXES = ("hydra", "mlflow", "paths", "study", "dataset", "prepare")
PREPARE = "prepare."


def format_value(value) -> str:
    """An axis value as a directory and override writes it: 0.1, 1e-05, true, sgd, 300-100."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value)
    return str(value)


def override_value(value) -> str:
    """An axis value as a Hydra override value (lists as ``[a,b]``; 1 and 1.0 stay apart)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return format_value(value)


def column(key: str, keys) -> str:
    """An axis's short name (its column and directory label): the key's last part, or the whole key
    when two axes of the study end the same (``train.lr`` -> ``lr``)."""
    last = key.rsplit(".", 1)[-1]
    clash = sum(1 for k in keys if k.rsplit(".", 1)[-1] == last) > 1
    return key if clash else last


def parse(raw, where: str) -> dict[str, list]:
    """``study.axes`` of a params file, checked: a mapping of dotted config keys to value lists."""
    if raw is None:
        return {}
    require(
        isinstance(raw, dict),
        f"{where}: study.axes must map config keys to value lists, e.g. {{train.lr: [0.01, 0.1]}}",
    )
    axes = {}
    for key, values in raw.items():
        require(
            isinstance(key, str) and key and key not in FIXED and "=" not in key,
            f"{where}: study.axes has key {key!r}; datasets, models and seeds are study.datasets/"
            "models/seeds, an axis is any other config key such as train.lr or model.net.hidden",
        )
        require(
            isinstance(values, list) and values,
            f"{where}: study.axes.{key} must be a non-empty list of values, e.g. [0.01, 0.1]",
        )
        labels = [format_value(v) for v in values]
        require(len(set(labels)) == len(labels), f"{where}: study.axes.{key} has duplicates: {values}")
        for value in values:
            require(
                not isinstance(value, dict),
                f"{where}: study.axes.{key} has {value!r}; values are numbers, strings, booleans or lists",
            )
        axes[key] = list(values)
    return axes


def combinations(axes: dict[str, list]) -> list[dict]:
    """Every combination of the axes' values, in the order of params.yaml ({} when there is none)."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def dir_parts(values: dict) -> list[str]:
    """``<name>=<value>`` path parts of a run's (or a prepared variant's) axis values, in order."""
    return [f"{column(key, values)}={format_value(value)}" for key, value in values.items()]


def label(values: dict) -> str:
    """A variant's axis values in one line, for titles and logs: ``lr=0.1 width=16``."""
    return " ".join(dir_parts(values))


def command_line_axes() -> list[str]:
    """Keys the command line sets besides the study's axes (see the module docstring)."""
    return [k for k in os.environ.get(COMMAND_LINE_AXES_ENV, "").split(",") if k]


def is_run_key(key: str, speed_only=()) -> bool:
    """A dotted config key that changes what a run is: not a config group, a path, the data's
    definition (``NOT_AXES``) or one of the ``speed_only`` trainer settings."""
    excluded = (*NOT_AXES, *(f"trainer.{k}" for k in speed_only))
    return "." in key and "/" not in key and not any(key == n or key.startswith(n + ".") for n in excluded)


def run_values(cfg) -> dict:
    """The axis values of a run config: the study's axes, then the sweep's own, as the config has them."""
    from omegaconf import OmegaConf

    keys = list((OmegaConf.select(cfg, "study.axes") or {}).keys())
    keys += [k for k in command_line_axes() if k not in keys]
    values = {}
    for key in keys:
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        values[key] = value
    return values


def prepare_values(values: dict) -> dict:
    """The axis values that decide the prepared data (``prepare.*``)."""
    return {k: v for k, v in values.items() if k.startswith(PREPARE)}


def prepared_dir(root: str | Path, dataset: str, values: dict) -> Path:
    """``<root>/<dataset>[/<name>=<value>...]``: a prepared data variant (one per ``prepare.*`` value)."""
    return Path(root, dataset, *dir_parts(prepare_values(values)))


def sweep_overrides(axes: dict[str, list], argv: list[str]) -> list[str]:
    """The train sweep's override per study axis, unless the command line sets that key itself."""
    given = {arg.partition("=")[0].lstrip("+~") for arg in argv if "=" in arg}
    return [
        f"{key}={','.join(override_value(v) for v in values)}"
        for key, values in axes.items()
        if key not in given
    ]
