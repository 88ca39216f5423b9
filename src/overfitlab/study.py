"""The study definition in params.yaml, read and checked once for the stages that are not Hydra apps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .checks import is_int
from .data.controls import check, control_tag
from .errors import ConfigError, exit_on_config_error, require
from .runs import run_dir


def project_root(start: str | Path | None = None) -> Path:
    """The directory holding ``conf/train.yaml``: the working directory or one above it.

    A study is a directory with its own ``params.yaml`` and ``dvc.yaml`` (the project root is the
    default study, ``studies/<name>/`` are others); its stages run there and share the project's
    ``conf/`` library and MLflow store.
    """
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "conf" / "train.yaml").is_file():
            return directory
    raise ConfigError(
        f"conf/train.yaml not found in {here} or above: run from the project root "
        "or a study directory (studies/<name>/)"
    )


def conf_dir() -> str:
    """conf/ of the project, for ``hydra.main``; falls back to ./conf so Hydra names the problem."""
    try:
        return str(project_root() / "conf")
    except ConfigError:
        return str(Path.cwd() / "conf")


@dataclass(frozen=True)
class Study:
    name: str
    datasets: list[str]
    models: list[str]
    seeds: list[int]
    label_noise: list[float]  # one data variant per fraction (study.label_noise, else train.label_noise)
    pixels: str = "none"

    def data_label(self, dataset: str, label_noise: float) -> str:
        """The name a run's data goes by: the dataset plus its controls (fashion_mnist+labels0.2)."""
        return f"{dataset}{control_tag(label_noise, self.pixels)}"

    def run_dir(self, runs_root: Path, dataset: str, model: str, seed: int, label_noise: float) -> Path:
        """The run's directory: the layout is runs.run_dir's alone."""
        return run_dir(runs_root, self.data_label(dataset, label_noise), model, seed)


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
    train = params.get("train") or {}
    pixels = train.get("pixels", "none")
    label_noise = study.get("label_noise", [train.get("label_noise", 0.0)])
    require(
        isinstance(label_noise, list) and label_noise,
        f"{params_file}: study.label_noise must be a non-empty list of fractions, e.g. [0.0, 0.5, 1.0]",
    )
    require(len(set(label_noise)) == len(label_noise), f"{params_file}: study.label_noise has duplicates")
    key = (
        f"{params_file}: study.label_noise" if "label_noise" in study else f"{params_file}: train.label_noise"
    )
    for p in label_noise:
        check(p, pixels, noise_key=key)
    return Study(
        str(study["name"]),
        list(study["datasets"]),
        list(study["models"]),
        list(seeds),
        [float(p) for p in label_noise],
        pixels,
    )


CONFIG_GROUPS = ("dataset", "model", "optimizer", "trainer")


@exit_on_config_error
def preflight(argv: list[str]) -> None:
    """Check params.yaml's study and the ``group=name[,name...]`` overrides before Hydra starts,
    so a typo is one line naming the key and the allowed values, not a Hydra traceback."""
    conf_dir = project_root() / "conf"
    load_study(conf_dir=conf_dir)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        allowed = sorted(p.stem for p in (Path(conf_dir) / key).glob("*.yaml"))
        for name in value.split(","):
            require(name in allowed, f"{key}={name!r} is not in conf/{key}/; allowed: {allowed}")
