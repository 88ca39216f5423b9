"""Which runs of the study collect reads: complete (``done.json``) and current.

A run is current if its ``config_hash`` is the one the train stage would compute for it now (the
run's config composed from params.yaml and conf/ as the train stage's sweep does, the prepared
data's version and the training code), and if the code of every measure it recorded is unchanged.
A run trained with other settings (say ``train.epochs`` before an edit of params.yaml) is refused
with one line saying why, instead of being reported as if the study had produced it; a run
trained before a measure existed is kept, and collect says how many lack it.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import axes
from ..data import layout
from ..errors import ConfigError
from ..identity import changed_measures, config_hash, identity
from ..measures import fingerprints
from ..project import project_root
from ..runs import CONFIG, METRICS, metric_columns, read_done
from ..study import Study


@dataclass(frozen=True)
class Variant:
    """One (dataset, axis values) of the study: its label in the tables, its prepared data."""

    dataset: str
    values: dict

    @property
    def label(self) -> str:
        """``fashion_mnist`` or ``fashion_mnist+label_noise=0.2+lr=0.1``: the tables' ``dataset``."""
        return "+".join([self.dataset, *axes.dir_parts(self.values)])

    def prepared(self, prepared_root: Path) -> Path:
        return axes.prepared_dir(prepared_root, self.dataset, self.values)


def variants(study: Study) -> list[Variant]:
    return [Variant(d, v) for d, v in itertools.product(study.datasets, study.variants())]


def run_overrides(study: Study, params: dict):
    """Each run of the study as the train stage's sweep composes it: (variant, model, seed, the Hydra
    overrides: dataset, model, seed, one per axis, plus dvc.yaml's ``optimizer=``).

    Override values are written as the sweep writes them (``axes.override_value``): 1 and 1.0 are
    different configs to the hash."""
    train = params.get("train") or {}
    optimizer = [f"optimizer={train['optimizer']}"] if "optimizer" in train else []
    for variant, model, seed in itertools.product(variants(study), study.models, study.seeds):
        values = [f"{k}={axes.override_value(v)}" for k, v in variant.values.items()]
        yield (
            variant,
            model,
            seed,
            [f"dataset={variant.dataset}", f"model={model}", f"seed={seed}", *values, *optimizer],
        )


def expected_identities(
    study: Study, params: dict, metas: dict[Path, dict], prepared_root: Path
) -> dict[Path, dict]:
    """The identity the train stage would give each run of the study now, by run dir (relative to
    the runs root): the run's config composed from conf/ and params.yaml with the overrides of the
    train stage's sweep (``run_overrides``), the prepared data's meta.json and the numerics code."""
    from hydra import compose, initialize_config_dir

    expected = {}
    conf = str(project_root() / "conf")
    with initialize_config_dir(version_base="1.3", config_dir=conf, job_name="collect"):
        for variant, model, seed, overrides in run_overrides(study, params):
            cfg = compose(config_name="train", overrides=overrides)
            meta = metas[variant.prepared(prepared_root)]
            expected[study.run_dir(Path(), variant.dataset, model, variant.values, seed)] = identity(
                cfg, meta
            )
    return expected


def changes(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two identities."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += changes(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return out


def why_stale(directory: Path, done: dict, named: tuple, expected: dict, meta: dict) -> str:
    """Why a run's done.json does not carry the hash the study expects, as far as can be told:
    another run's marker, a config (config.yaml) other than the study's now, or neither."""
    from omegaconf import OmegaConf

    if (done.get("dataset"), done.get("model"), done.get("seed")) != named:
        mismatch = [
            f"{k} {done.get(k)}"
            for k, v in zip(("dataset", "model", "seed"), named, strict=True)
            if done.get(k) != v
        ]
        return f"its done.json is for {', '.join(mismatch)}"
    if not (directory / CONFIG).exists():
        return f"no {CONFIG} to compare"
    differ = changes(identity(OmegaConf.load(directory / CONFIG), meta), expected)
    if differ:
        return "; ".join(differ[:3]) + (f"; {len(differ) - 3} more" if len(differ) > 3 else "")
    return "same config: the numerics code or the prepared data changed since it was trained"


def read_runs(
    study: Study, runs_root: Path, expected: dict[Path, dict], metas: dict[Path, dict], prepared_root: Path
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Epoch rows and run summaries of the study's complete runs, and the summaries of its diverged
    runs (kept out of every statistic, listed by the report); every run must be finished and current.

    ``dataset`` in the tables is the variant's label (the dataset and its axis values), so that every
    table and figure compares like with like; ``source_dataset`` is the dataset, one column per axis
    holds its value (``axes.column``) and ``prepared`` the prepared data's directory."""
    epochs, runs, diverged, missing, stale = [], [], [], [], []
    lacking: dict[str, int] = {}  # measure -> runs trained before it existed
    columns = {key: axes.column(key, study.axes) for key in study.axes}
    for variant, model, seed in itertools.product(variants(study), study.models, study.seeds):
        key = study.run_dir(Path(), variant.dataset, model, variant.values, seed)
        directory = runs_root / key
        done = read_done(directory)
        if done is None:
            missing.append(str(directory))
            continue
        # A run's device kind is its own (a GPU job's runs are collected on a CPU login node).
        current = expected[key] | {"device_kind": done.get("device_kind", expected[key]["device_kind"])}
        meta = metas[variant.prepared(prepared_root)]
        if done.get("config_hash") != config_hash(current):
            named = (variant.dataset, model, seed)
            stale.append(f"{directory} ({why_stale(directory, done, named, current, meta)})")
            continue
        if changed_measures(done):
            names = ", ".join(changed_measures(done))
            stale.append(f"{directory} (the code of its measure(s) {names} changed since it was measured)")
            continue
        for name in sorted(set(fingerprints()) - set(done.get("measures") or fingerprints())):
            lacking[name] = lacking.get(name, 0) + 1
        own = {columns[k]: v for k, v in variant.values.items()}
        summary = {k: v for k, v in done.items() if k not in ("final", "axes")} | {
            "dataset": variant.label,
            "source_dataset": variant.dataset,
            **own,
            "prepared": variant.prepared(prepared_root).as_posix(),
            "run_dir": key.as_posix(),
            "status": done.get("status", "complete"),
        }
        if summary["status"] == "diverged":
            diverged.append(summary)
            continue
        metrics = pd.read_csv(directory / METRICS).assign(dataset=variant.label)
        epochs.append(metrics.assign(**own))
        runs.append(summary)
    for name, count in lacking.items():
        print(
            f"note: {count} run(s) were trained before the measure {name!r} existed: "
            "its columns are empty for them (nothing is retrained for a new measure)",
            file=sys.stderr,
        )
    if missing:
        raise ConfigError(
            f"{len(missing)} run(s) of the study are not complete, e.g. {missing[0]}: "
            "run `dvc repro` (or the train stage) first"
        )
    if stale:
        raise ConfigError(
            f"{len(stale)} run(s) were trained with another config than the study now defines, "
            f"e.g. {stale[0]}: run `dvc repro` (or the train stage) to retrain them"
        )
    if not epochs:
        raise ConfigError(
            f"every run of the study diverged (loss NaN or infinite), e.g. {diverged[0]['dataset']} "
            f"{diverged[0]['model']} seed={diverged[0]['seed']}: lower train.lr or check the data"
        )
    table = pd.concat(epochs, ignore_index=True)
    return table[metric_columns(table.columns)], pd.DataFrame(runs), pd.DataFrame(diverged)


def read_metas(study: Study, prepared_root: Path) -> dict[Path, dict]:
    """meta.json of each prepared data variant of the study, by its directory."""
    metas = {}
    for variant in variants(study):
        meta_file = layout.meta_file(variant.prepared(prepared_root))
        if not meta_file.exists():
            raise ConfigError(f"{meta_file} not found: run `dvc repro` (or the prepare stage) first")
        metas[meta_file.parent] = json.loads(meta_file.read_text())
    return metas
