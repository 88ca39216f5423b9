"""The study definition in params.yaml, read and checked once for the stages that are not Hydra apps."""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from . import resolvers  # noqa: F401  (registers conf/'s resolvers for every entry point)
from .axes import (
    COMMAND_LINE_AXES_ENV,
    FIXED,
    SPEED_ONLY_TRAINER_KEYS,
    combinations,
    is_run_key,
    sweep_overrides,
)
from .axes import parse as parse_axes
from .checks import is_int
from .data.verify import verify_prepared
from .errors import ConfigError, exit_on_config_error, require
from .project import project_root
from .runs import run_dir


@dataclass(frozen=True)
class Study:
    """params.yaml's ``study:``: datasets x models x axes x seeds (``axes.py`` holds the axis rules)."""

    name: str
    datasets: list[str]
    models: list[str]
    seeds: list[int]
    axes: dict = field(default_factory=dict)  # config key -> values (study.axes)

    def variants(self) -> list[dict]:
        """Every combination of the axes' values ([{}] without axes)."""
        return combinations(self.axes)

    def run_dir(self, runs_root: Path, dataset: str, model: str, values: dict, seed: int) -> Path:
        """The run's directory: the layout is runs.run_dir's alone."""
        return run_dir(runs_root, dataset, model, values, seed)


def load_study(params_file: str | Path = "params.yaml", conf_dir: str | Path | None = None) -> Study:
    params_file = Path(params_file)
    conf_dir = Path(conf_dir) if conf_dir is not None else project_root() / "conf"
    require(params_file.exists(), f"{params_file} not found: run from the project root")
    try:
        params = yaml.safe_load(params_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{params_file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    study = params.get("study") or {}
    for key in ("name", "datasets", "models", "seeds"):
        require(key in study, f"{params_file}: study.{key} is missing")
    for key, group in (("datasets", "dataset"), ("models", "model")):
        names = study[key]
        require(isinstance(names, list) and names, f"{params_file}: study.{key} must be a non-empty list")
        allowed = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for name in names:
            require(
                name in allowed,
                f"{params_file}: study.{key} has unknown {group} {name!r}; allowed: {allowed}",
            )
    seeds = study["seeds"]
    require(
        isinstance(seeds, list) and seeds,
        f"{params_file}: study.seeds must be a non-empty list of integers, e.g. [0, 1, 2]",
    )
    for seed in seeds:
        require(
            is_int(seed) and seed >= 0,
            f"{params_file}: study.seeds has {seed!r}; seeds are non-negative integers",
        )
    require(len(set(seeds)) == len(seeds), f"{params_file}: study.seeds has duplicates: {seeds}")
    require(
        "label_noise" not in study,
        f"{params_file}: study.label_noise is now an axis like any other: write "
        f"study.axes: {{train.label_noise: {study.get('label_noise')}}}",
    )
    axes = parse_axes(study.get("axes"), str(params_file))
    return Study(str(study["name"]), list(study["datasets"]), list(study["models"]), list(seeds), axes)


CONFIG_GROUPS = ("dataset", "model", "optimizer", "trainer")
# Keys a command line may add (``+key=...``) that nothing in conf/ declares: constructor arguments of
# what a config instantiates (the constructor refuses an unknown one), an image folder's named extra
# test sets (a mapping of the user's names) and Hydra's own settings. ``+group=option`` adds a config
# group (``+search=mlp``).
ADDABLE = ("model.net.", "optimizer.", "dataset.extra_test_sets.", "hydra.")


@cache
def read_train_keys(conf_dir: Path) -> frozenset[str]:
    """The ``train.*`` keys of params.yaml that something reads: every ``train.<key>`` conf/ refers
    to (``${train.lr}``, ``${oc.select:train.augment,none}``), and ``train.optimizer`` (the train
    stage's command in dvc.yaml)."""
    import re

    found = {"optimizer"}
    for path in Path(conf_dir).rglob("*.yaml"):
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        found |= set(re.findall(r"\btrain\.(\w+)", text))
    return frozenset(found)


def check_read(keys, conf_dir: Path, where: str) -> None:
    """Every ``train.*`` key in ``keys`` is one something reads: a typo or an option that does not
    exist is one line naming it and the nearest known key, never a run that silently ignores it."""
    import difflib

    known = read_train_keys(conf_dir)
    for key in keys:
        name = key.lstrip("+~")
        if not name.startswith("train.") or name.removeprefix("train.") in known:
            continue
        near = difflib.get_close_matches(name, [f"train.{k}" for k in sorted(known)], n=1)
        hint = f"; did you mean {near[0]}?" if near else f"; known: {', '.join(sorted(known))}"
        raise ConfigError(f"{where}: {name} is not read by anything (conf/ uses no such key){hint}")


def swept_keys(argv: list[str]) -> list[str]:
    """The keys a command line sweeps (``key=a,b``, ``range(...)``, ...), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:  # Hydra's own message, on one line
        raise ConfigError(f"command line: {str(exc).splitlines()[0]}") from None
    return [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]


def check_axes(study: Study, conf_dir: Path, argv: list[str]) -> None:
    """Each value of each swept key (a study axis, or a key the command line sweeps) composes with
    each model of the sweep (``model.width`` needs a model with a width) and passes the run rules:
    a one-line error before job 0 trains, never a sweep stopped half-way."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .run_rules import check_run_config

    given = [a for a in argv if "=" in a and not a.startswith(("-", "hydra"))]
    parsed = OverridesParser.create().parse_overrides(given)

    def values(o) -> list[str]:
        if not o.is_sweep_override():
            return [o.get_value_element_as_str()]
        return list(o.sweep_string_iterator()) if o.is_discrete_sweep() else []  # sampled: unknown

    chosen = {o.get_key_element(): values(o) for o in parsed if o.get_key_element() in ("dataset", "model")}
    models = chosen.get("model") or study.models
    dataset = (chosen.get("dataset") or study.datasets)[0]
    own = [(a, o) for a, o in zip(given, parsed, strict=True) if o.get_key_element() not in FIXED]
    fixed = {o.get_key_element(): a for a, o in own if not o.is_sweep_override()}
    # each swept value, with the others fixed (a fixed value is in every compose: composed once)
    checked = {o.get_key_element(): values(o) for _, o in own if o.is_sweep_override()}
    prepared = set()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir), job_name="preflight"):
        for model, (key, key_values) in itertools.product(models, [(None, [None]), *checked.items()]):
            name = (key or "").lstrip("+~")
            where = f"params.yaml: study.axes.{name}" if name in study.axes else f"command line: {name}"
            others = [a for k, a in fixed.items() if k != key]
            for value in key_values:
                setting = [] if key is None else [f"{key}={value}"]
                try:
                    cfg = compose("train", [f"dataset={dataset}", f"model={model}", *others, *setting])
                except Exception as exc:
                    what = f"{where}={value}" if key else f"command line: {' '.join(others) or 'the study'}"
                    raise ConfigError(
                        f"{what} does not apply to model {model} (conf/model/{model}.yaml): "
                        f"{str(exc).splitlines()[0]}"
                    ) from None
                require(
                    key is None
                    or OmegaConf.select(cfg, name, throw_on_missing=False) is not None
                    or value == "null",
                    f"{where}: the run config has no key {name} (model {model})",
                )
                check_run_config(cfg)
                prepared.add(cfg.paths.prepared)
    for directory in sorted(prepared):  # every job's data, before job 0 trains
        verify_prepared(directory)


@exit_on_config_error
def preflight(argv: list[str], command_line_axes: bool = True) -> list[str]:
    """Check params.yaml's study and the command line before Hydra starts, so a typo is one line naming
    the key and the allowed values, not a Hydra traceback; returns the command line to run.

    A key the command line sets that is not a study axis becomes an axis of this command
    (``axes.COMMAND_LINE_AXES_ENV``): no two jobs of a sweep share a run directory, and a run with
    other settings than the study's never replaces one of the study's runs. In a multirun the
    study's axes become sweep overrides; a sweep over a config group other than dataset and model
    is refused.
    """
    conf_dir = project_root() / "conf"
    study = load_study(conf_dir=conf_dir)
    params = yaml.safe_load(Path("params.yaml").read_text()) or {}
    check_read([f"train.{k}" for k in params.get("train") or {}], conf_dir, "params.yaml")
    check_read(study.axes, conf_dir, "params.yaml: study.axes")
    given = [a.partition("=")[0] for a in argv if "=" in a and not a.startswith("-")]
    check_read(given, conf_dir, "command line")
    for key in given:
        name = key.lstrip("+~")
        require(
            not key.startswith("+") or "." not in name or name.startswith(("train.", *ADDABLE)),
            f"command line: {key} adds a key nothing reads; set an existing one ({name}=...) or, for "
            "an option of a run, its train.* key in params.yaml",
        )
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        allowed = sorted(p.stem for p in (Path(conf_dir) / key).glob("*.yaml"))
        for name in value.split(","):
            require(name in allowed, f"{key}={name!r} is not in conf/{key}/; allowed: {allowed}")
    if command_line_axes:  # the train stage's: what a run is (prepare and search name no runs)
        given = [a.partition("=")[0].lstrip("+~") for a in argv if "=" in a and not a.startswith("-")]
        own = [
            k for k in dict.fromkeys(given) if is_run_key(k, SPEED_ONLY_TRAINER_KEYS) and k not in study.axes
        ]
        os.environ[COMMAND_LINE_AXES_ENV] = ",".join(own)
    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    for key in swept_keys(argv):
        require(
            key in ("dataset", "model") or key not in CONFIG_GROUPS,
            f"{key}=...: a sweep over conf/{key}/ would put its runs in one directory; run one sweep "
            f"(or one study) per {key}, or sweep the keys that differ (e.g. train.lr)",
        )
    for key in (k.lstrip("+~") for k in given):
        if key in study.axes:
            print(
                f"note: the command line's {key} replaces the study axis {key}: {study.axes[key]}",
                file=sys.stderr,
            )
    argv = [*argv, *sweep_overrides(study.axes, argv)]
    check_axes(study, conf_dir, argv)
    return argv
