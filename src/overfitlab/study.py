"""The study definition in params.yaml, read and checked once for the stages that are not Hydra apps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .controls import check, control_tag
from .errors import ConfigError, exit_on_config_error, require


@dataclass(frozen=True)
class Study:
    name: str
    datasets: list[str]
    models: list[str]
    seeds: list[int]
    control_tag: str = ""  # suffix naming the randomization controls of params.yaml's train:

    def run_dir(self, runs_root: Path, dataset: str, model: str, seed: int) -> Path:
        return runs_root / f"{dataset}{self.control_tag}" / model / f"seed={seed}"


def load_study(params_file: str | Path = "params.yaml", conf_dir: str | Path = "conf") -> Study:
    params_file, conf_dir = Path(params_file), Path(conf_dir)
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
            require(name in allowed, f"{params_file}: study.{key} has unknown {group} {name!r}; allowed: {allowed}")
    seeds = study["seeds"]
    require(isinstance(seeds, list) and seeds, f"{params_file}: study.seeds must be a non-empty list of integers, e.g. [0, 1, 2]")
    for seed in seeds:
        require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
                f"{params_file}: study.seeds has {seed!r}; seeds are non-negative integers")
    require(len(set(seeds)) == len(seeds), f"{params_file}: study.seeds has duplicates: {seeds}")
    train = params.get("train") or {}
    label_noise, pixels = train.get("label_noise", 0.0), train.get("pixels", "none")
    check(label_noise, pixels)
    return Study(str(study["name"]), list(study["datasets"]), list(study["models"]), list(seeds),
                 control_tag(label_noise, pixels))


CONFIG_GROUPS = ("dataset", "model", "optimizer", "trainer")


@exit_on_config_error
def preflight(argv: list[str], conf_dir: str | Path = "conf") -> None:
    """Check params.yaml's study and the ``group=name[,name...]`` overrides before Hydra starts,
    so a typo is one line naming the key and the allowed values, not a Hydra traceback."""
    require(Path(conf_dir).is_dir(), f"{conf_dir}/ not found: run from the project root (where params.yaml is)")
    load_study(conf_dir=conf_dir)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        allowed = sorted(p.stem for p in (Path(conf_dir) / key).glob("*.yaml"))
        for name in value.split(","):
            require(name in allowed, f"{key}={name!r} is not in conf/{key}/; allowed: {allowed}")
