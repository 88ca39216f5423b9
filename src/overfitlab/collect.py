"""Stage ``collect``: every complete, current run of the study -> one tidy table and a per-run summary.

Outputs (in ``reports/metrics/``):
* ``epochs.parquet`` / ``epochs.csv``: one row per run x epoch (dataset, model, seed, epoch,
  train_loss, train_acc, val_loss, val_acc, test_loss, test_acc, gap_acc, gap_loss, ...;
  ``test_acc/<name>``, ``test_loss/<name>`` for the extra test sets of image-folder datasets);
* ``runs.csv``: one row per run (final metrics, the epoch chosen on validation and its test
  accuracy, the test-chosen oracle, time to fit, parameters, provenance);
* ``summary.json``: DVC metrics, mean and sd of the final accuracies per dataset (variant) and model;
* ``axes.json``: the study's axes, ``{column: config key}`` (one column per axis in the tables);
* ``curves/<dataset>__<model>.csv``: mean curves over seeds, declared as ``dvc plots``;
* ``predictions.parquet``: final test predictions of the median seed of each (dataset, model);
* ``class_counts.csv``: examples per class and split of each prepared dataset (class balance);
* ``examples.parquet``: one row per run x training example (learned epoch, forgetting events, ...)
  and ``example_consistency.parquet``: one row per (dataset, model) x example, across seeds
  (``examples.py``); their summary per model is ``summary.json``'s ``examples``;
* ``feature_maps/*.npz`` + ``feature_maps.csv``: the median seed's conv feature maps of one test
  image; the csv says whose each file is (dataset, model, seed, file), so no reader parses names.

A run is collected only if it is complete (``done.json``) and current: its ``config_hash`` must be
the one the train stage would compute for it now (the run's config composed from params.yaml and
conf/ as the train stage's sweep does, the prepared data's version and the training code). A run
trained with other settings (say ``train.epochs`` before an edit of params.yaml) is refused with
one line, instead of being reported as if the study had produced it.

    python -m overfitlab.collect

Why one file: it is one stage with one entry point, and every output above is a few lines
reading the same runs; splitting it would spread one contract (what collect writes) over files.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import axes, examples
from .data import layout
from .errors import ConfigError, exit_on_config_error
from .files import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text
from .identity import changed_measures, config_hash, identity
from .measures import fingerprints
from .project import project_root
from .runs import (
    CONFIG,
    FEATURE_MAPS,
    METRICS,
    PREDICTIONS,
    extra_test_sets,
    metric_columns,
    read_done,
)
from .study import Study, load_study

CURVE_METRICS = ["train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss"]
KEYS = ["dataset", "model", "seed"]


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


def add_derived(epochs: pd.DataFrame) -> pd.DataFrame:
    """Generalization gap per epoch: accuracy train - test, loss test - train."""
    epochs = epochs.copy()
    epochs["gap_acc"] = epochs["train_acc"] - epochs["test_acc"]
    epochs["gap_loss"] = epochs["test_loss"] - epochs["train_loss"]
    return epochs


FIT_THRESHOLD = 0.99  # "time to fit": first epoch whose running training accuracy reaches 99 %
# "never left chance": a final training accuracy within this many points (fraction) of 1/K, the
# accuracy of a constant guess; such a run learned nothing (e.g. a seed whose first steps found no
# gradient to follow). Kept in every statistic, and said so: the reader sees why an interval is wide.
CHANCE_MARGIN = 0.02


def epoch_of(epochs: pd.DataFrame, metric: str, best: str = "max") -> pd.DataFrame:
    """Each run's row at the first epoch where ``metric`` is best (``max`` or ``min``)."""
    rows = epochs.dropna(subset=[metric]).sort_values(KEYS + ["epoch"])
    grouped = rows.groupby(KEYS, sort=False)[metric]
    return rows.loc[grouped.idxmax() if best == "max" else grouped.idxmin()]


def summarize_runs(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final metrics; the epoch chosen on validation (best val_acc, the first on
    ties) and its test accuracy; the oracle (max over epochs of test acc: chosen on the test set,
    optimistic, for reference only); the epoch of lowest test loss (the overfitting onset); and
    the time to fit the training set (NaN if never reached)."""
    last = epochs.sort_values("epoch").groupby(KEYS, sort=False).tail(1)
    metric_cols = [c for c in epochs.columns if c not in KEYS + ["epoch"]]
    final = last[KEYS + metric_cols].rename(columns={c: f"final_{c}" for c in metric_cols})
    tests = ["test_acc"] + [f"test_acc/{n}" for n in extra_test_sets(epochs.columns)]
    at_best_val = {c: c.replace("test_acc", "test_acc_at_best_val") for c in tests}
    if "val_acc" in epochs and epochs["val_acc"].notna().any():
        best_val = epoch_of(epochs, "val_acc")[KEYS + ["epoch"] + tests].rename(
            columns={"epoch": "best_val_epoch", **at_best_val}
        )
    else:  # no validation split (prepare.val_size: 0): nothing is chosen on validation
        best_val = last[KEYS].assign(best_val_epoch=np.nan, **dict.fromkeys(at_best_val.values(), np.nan))
    oracle = epoch_of(epochs, "test_acc")[KEYS + ["epoch", "test_acc"]].rename(
        columns={"epoch": "oracle_best_test_epoch", "test_acc": "oracle_best_test_acc"}
    )
    min_loss = epoch_of(epochs, "test_loss", "min")[KEYS + ["epoch"]].rename(
        columns={"epoch": "min_test_loss_epoch"}
    )
    fitted = epochs[epochs["train_acc"] >= FIT_THRESHOLD].groupby(KEYS)["epoch"].min().rename("fit_epoch")
    table = runs.merge(final, on=KEYS).merge(best_val, on=KEYS, how="left").merge(oracle, on=KEYS)
    table = table.merge(min_loss, on=KEYS).merge(fitted.reset_index(), on=KEYS, how="left")
    chance = 1 / table["class_names"].map(len)
    table["at_chance"] = table["final_train_acc"] <= chance + CHANCE_MARGIN
    return table.sort_values(KEYS).reset_index(drop=True)


def metrics_summary(run_table: pd.DataFrame) -> dict:
    """Nested {dataset: {model: {...}}} of means and sds, for `dvc metrics show/diff`."""
    out: dict = {}
    for (dataset, model), group in run_table.groupby(["dataset", "model"], sort=True):
        entry = {
            "n_seeds": int(len(group)),
            "n_params": int(group["n_params"].iloc[0]),
            "n_at_chance": int(group["at_chance"].sum()),  # kept in the means below (collect: CHANCE_MARGIN)
        }
        extras = [
            f"final_test_acc/{n}"
            for n in extra_test_sets(group.columns)
            if group[f"final_test_acc/{n}"].notna().any()
        ]
        columns = ("final_test_acc", "final_train_acc", "final_val_acc", "final_gap_acc", *extras)
        for col in (c for c in columns if c in group):  # no final_val_acc without a validation split
            name = col.removeprefix("final_")
            entry[f"{name}_mean"] = round(float(group[col].mean()), 6)
            entry[f"{name}_sd"] = round(float(group[col].std(ddof=1)), 6) if len(group) > 1 else None
        out.setdefault(dataset, {})[model] = entry
    return out


def mean_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    extras = [f"test_{m}/{n}" for n in extra_test_sets(epochs.columns) for m in ("acc", "loss")]
    cols = [c for c in CURVE_METRICS if c in epochs] + extras
    return epochs.groupby(["dataset", "model", "epoch"], sort=True)[cols].mean().reset_index()


def median_run(group: pd.DataFrame) -> pd.Series:
    """The run with the median final test accuracy (the lower one for an even count): a typical
    seed, not the best one."""
    return group.sort_values(["final_test_acc", "seed"]).iloc[(len(group) - 1) // 2]


def median_runs(run_table: pd.DataFrame, runs_root: Path):
    """(dataset, model, seed, run dir) of the median run of each (dataset, model)."""
    for (dataset, model), group in run_table.groupby(["dataset", "model"], sort=True):
        run = median_run(group)
        yield dataset, model, int(run.seed), runs_root / run.run_dir


def median_seed_predictions(run_table: pd.DataFrame, runs_root: Path) -> pd.DataFrame:
    """Final test predictions of the median run of each (dataset, model)."""
    frames = []
    for dataset, model, seed, directory in median_runs(run_table, runs_root):
        label, predicted, confidence = np.load(directory / PREDICTIONS).T
        names = np.asarray(read_done(directory)["class_names"])
        frames.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "model": model,
                    "seed": seed,
                    "index": np.arange(len(label)),
                    "label": names[label.astype(int)],
                    "predicted": names[predicted.astype(int)],
                    "confidence": confidence,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def copy_feature_maps(run_table: pd.DataFrame, runs_root: Path, out: Path) -> pd.DataFrame:
    """The median seed's conv feature maps per (dataset, model) on real data (no control drew labels
    or pixels), copied to ``out``; returns the index (dataset, model, seed, file) of the files."""
    rows = []
    drawn = run_table.get("labels_drawn", pd.Series(0, index=run_table.index)).fillna(0)
    pixels = run_table.get("pixels", pd.Series("none", index=run_table.index)).fillna("none")
    real_data = run_table[(drawn == 0) & (pixels == "none")]
    for dataset, model, seed, directory in median_runs(real_data, runs_root):
        if (directory / FEATURE_MAPS).exists():
            name = f"{dataset}__{model}__seed={seed}.npz"
            atomic_write_bytes(out / name, (directory / FEATURE_MAPS).read_bytes())
            rows.append({"dataset": dataset, "model": model, "seed": seed, "file": name})
    return pd.DataFrame(rows, columns=KEYS + ["file"])


def read_metas(study: Study, prepared_root: Path) -> dict[Path, dict]:
    """meta.json of each prepared data variant of the study, by its directory."""
    metas = {}
    for variant in variants(study):
        meta_file = layout.meta_file(variant.prepared(prepared_root))
        if not meta_file.exists():
            raise ConfigError(f"{meta_file} not found: run `dvc repro` (or the prepare stage) first")
        metas[meta_file.parent] = json.loads(meta_file.read_text())
    return metas


def class_counts(study: Study, metas: dict[Path, dict], prepared_root: Path) -> pd.DataFrame:
    """Examples per class and split of each variant's prepared data (``dataset``: the variant's label)."""
    rows = []
    for variant in variants(study):
        dataset, meta = variant.label, metas[variant.prepared(prepared_root)]
        for split, counts in meta["class_counts"].items():
            rows += [
                {"dataset": dataset, "split": split, "class": name, "count": int(n)}
                for name, n in zip(meta["class_names"], counts, strict=True)
            ]
    return pd.DataFrame(rows)


def _csv(df: pd.DataFrame) -> str:
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


@exit_on_config_error
def collect(
    params_file: str = "params.yaml",
    runs_root: str = "runs",
    out_dir: str = "reports/metrics",
    prepared_root: str = "data/prepared",
) -> pd.DataFrame:
    study = load_study(params_file)
    metas = read_metas(study, Path(prepared_root))
    params = yaml.safe_load(Path(params_file).read_text())
    expected = expected_identities(study, params, metas, Path(prepared_root))
    epochs, runs, diverged = read_runs(study, Path(runs_root), expected, metas, Path(prepared_root))
    epochs = add_derived(epochs).sort_values(["dataset", "model", "seed", "epoch"]).reset_index(drop=True)
    out = Path(out_dir)
    parquet = io.BytesIO()
    epochs.to_parquet(parquet, index=False)
    atomic_write_bytes(out / "epochs.parquet", parquet.getvalue())
    atomic_write_text(out / "epochs.csv", _csv(epochs))
    run_table = summarize_runs(epochs, runs)
    # runs.csv lists diverged runs too (status, diverged_epoch; no final metrics); nothing else has them.
    atomic_write_text(out / "runs.csv", _csv(pd.concat([run_table, diverged], ignore_index=True)))
    per_example = examples.collect_examples(run_table, Path(runs_root))
    for name, table in [
        ("examples.parquet", per_example),
        ("example_consistency.parquet", examples.consistency(per_example)),
    ]:
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        atomic_write_bytes(out / name, buffer.getvalue())
    atomic_write_json(
        out / "summary.json", metrics_summary(run_table) | {"examples": examples.summary(per_example)}
    )
    atomic_write_json(out / "axes.json", {axes.column(k, study.axes): k for k in study.axes})
    predictions = io.BytesIO()
    median_seed_predictions(run_table, Path(runs_root)).to_parquet(predictions, index=False)
    atomic_write_bytes(out / "predictions.parquet", predictions.getvalue())
    atomic_write_text(out / "class_counts.csv", _csv(class_counts(study, metas, Path(prepared_root))))
    with atomic_directory(out / "feature_maps") as maps_dir:
        maps = copy_feature_maps(run_table, Path(runs_root), maps_dir)
    atomic_write_text(out / "feature_maps.csv", _csv(maps))
    curves = mean_curves(epochs)
    for (dataset, model), group in curves.groupby(["dataset", "model"]):
        curve = _csv(group.drop(columns=["dataset", "model"]))
        atomic_write_text(out / "curves" / f"{dataset}__{model}.csv", curve)
    note = f" ({len(diverged)} diverged run(s) listed, left out of the statistics)" if len(diverged) else ""
    stuck = run_table[run_table["at_chance"]]
    if len(stuck):
        names = ", ".join(f"{r.dataset} {r.model} seed={r.seed}" for r in stuck.itertuples())
        note += f"; {len(stuck)} run(s) never left chance (kept in the statistics): {names}"
    print(f"collected {len(run_table)} runs, {len(epochs)} epoch rows -> {out}/{note}", file=sys.stderr)
    return epochs


def main() -> None:
    collect()


if __name__ == "__main__":
    main()
