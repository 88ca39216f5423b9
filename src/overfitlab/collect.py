"""Stage ``collect``: every complete run of the study -> one tidy table and a per-run summary.

Outputs (in ``reports/metrics/``):
* ``epochs.parquet`` / ``epochs.csv``: one row per run x epoch (dataset, model, seed, epoch,
  train_loss, train_acc, val_loss, val_acc, test_loss, test_acc, gap_acc, gap_loss, ...;
  ``test_acc/<name>``, ``test_loss/<name>`` for the extra test sets of image-folder datasets);
* ``runs.csv``: one row per run (final metrics, best epoch, parameters, provenance);
* ``summary.json``: DVC metrics, mean and sd of the final accuracies per dataset and model;
* ``curves/<dataset>__<model>.csv``: mean curves over seeds, declared as ``dvc plots``;
* ``predictions.parquet``: final test predictions of the median seed of each (dataset, model);
* ``class_counts.csv``: examples per class and split of each prepared dataset (class balance);
* ``feature_maps/<dataset>__<model>__seed=<n>.npz``: the median seed's conv feature maps of one test image.

    python -m overfitlab.collect
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, exit_on_config_error
from .files import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text
from .study import Study, load_study

CURVE_METRICS = ["train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss"]


def extra_test_sets(columns) -> list[str]:
    """Names of the extra test sets of image-folder datasets, from ``[final_]test_acc/<name>`` columns."""
    return sorted({c.split("/", 1)[1] for c in columns if c.removeprefix("final_").startswith("test_acc/")})


def read_runs(study: Study, runs_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Epoch rows and run summaries of the study's runs; every run must be complete."""
    epochs, runs, missing = [], [], []
    for dataset, label_noise, model, seed in itertools.product(study.datasets, study.label_noise,
                                                                study.models, study.seeds):
        run_dir = study.run_dir(runs_root, dataset, model, seed, label_noise)
        if not (run_dir / "done.json").exists():
            missing.append(str(run_dir))
            continue
        done = json.loads((run_dir / "done.json").read_text())
        epochs.append(pd.read_csv(run_dir / "metrics.csv"))
        runs.append({k: v for k, v in done.items() if k != "final"}
                    | {"source_dataset": dataset, "label_noise": label_noise, "pixels": study.pixels})
    if missing:
        raise ConfigError(f"{len(missing)} run(s) of the study are not complete, e.g. {missing[0]}: "
                          "run `dvc repro` (or the train stage) first")
    return pd.concat(epochs, ignore_index=True), pd.DataFrame(runs)


def add_derived(epochs: pd.DataFrame) -> pd.DataFrame:
    """Generalization gap per epoch: accuracy train - test, loss test - train."""
    epochs = epochs.copy()
    epochs["gap_acc"] = epochs["train_acc"] - epochs["test_acc"]
    epochs["gap_loss"] = epochs["test_loss"] - epochs["train_loss"]
    return epochs


FIT_THRESHOLD = 0.99  # "time to fit": first epoch whose running training accuracy reaches 99 %


def summarize_runs(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final metrics, epoch of best test accuracy and of lowest test loss
    (the overfitting onset), and the time to fit the training set (NaN if never reached)."""
    keys = ["dataset", "model", "seed"]
    last = epochs.sort_values("epoch").groupby(keys, sort=False).tail(1)
    metric_cols = [c for c in epochs.columns if c not in keys + ["epoch"]]
    final = last[keys + metric_cols].rename(columns={c: f"final_{c}" for c in metric_cols})
    best = epochs.loc[epochs.groupby(keys)["test_acc"].idxmax(), keys + ["epoch", "test_acc"]]
    best = best.rename(columns={"epoch": "best_test_epoch", "test_acc": "best_test_acc"})
    min_loss = epochs.loc[epochs.groupby(keys)["test_loss"].idxmin(), keys + ["epoch"]]
    min_loss = min_loss.rename(columns={"epoch": "min_test_loss_epoch"})
    fitted = epochs[epochs["train_acc"] >= FIT_THRESHOLD].groupby(keys)["epoch"].min().rename("fit_epoch")
    table = runs.merge(final, on=keys).merge(best, on=keys).merge(min_loss, on=keys)
    table = table.merge(fitted.reset_index(), on=keys, how="left")
    return table.sort_values(keys).reset_index(drop=True)


def metrics_summary(run_table: pd.DataFrame) -> dict:
    """Nested {dataset: {model: {...}}} of means and sds, for `dvc metrics show/diff`."""
    out: dict = {}
    for (dataset, model), group in run_table.groupby(["dataset", "model"], sort=True):
        entry = {"n_seeds": int(len(group)), "n_params": int(group["n_params"].iloc[0])}
        extras = [f"final_test_acc/{n}" for n in extra_test_sets(group.columns) if group[f"final_test_acc/{n}"].notna().any()]
        for col in ("final_test_acc", "final_train_acc", "final_val_acc", "final_gap_acc", *extras):
            entry[f"{col.removeprefix('final_')}_mean"] = round(float(group[col].mean()), 6)
            entry[f"{col.removeprefix('final_')}_sd"] = round(float(group[col].std(ddof=1)), 6) if len(group) > 1 else None
        out.setdefault(dataset, {})[model] = entry
    return out


def mean_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in CURVE_METRICS if c in epochs] + [f"test_{m}/{n}" for n in extra_test_sets(epochs.columns)
                                                        for m in ("acc", "loss")]
    return epochs.groupby(["dataset", "model", "epoch"], sort=True)[cols].mean().reset_index()


def median_run(group: pd.DataFrame) -> pd.Series:
    """The run with the median final test accuracy (the lower one for an even count): a typical
    seed, not the best one."""
    return group.sort_values(["final_test_acc", "seed"]).iloc[(len(group) - 1) // 2]


def median_seed_predictions(run_table: pd.DataFrame, runs_root: Path) -> pd.DataFrame:
    """Final test predictions of the median run of each (dataset, model)."""
    frames = []
    for (dataset, model), group in run_table.groupby(["dataset", "model"], sort=True):
        run = median_run(group)
        run_dir = runs_root / dataset / model / f"seed={run.seed}"
        done = json.loads((run_dir / "done.json").read_text())
        label, predicted, confidence = np.load(run_dir / "test_predictions.npy").T
        names = np.asarray(done["class_names"])
        frames.append(pd.DataFrame({"dataset": dataset, "model": model, "seed": int(run.seed),
                                    "index": np.arange(len(label)), "label": names[label.astype(int)], "predicted": names[predicted.astype(int)],
                                    "confidence": confidence}))
    return pd.concat(frames, ignore_index=True)


def copy_feature_maps(run_table: pd.DataFrame, runs_root: Path, out: Path) -> int:
    """The median seed's conv feature maps per (dataset, model) on the real data (no control)."""
    copied = 0
    for (dataset, model), group in run_table[run_table.dataset == run_table.source_dataset].groupby(["dataset", "model"]):
        run = median_run(group)
        source = runs_root / dataset / model / f"seed={run.seed}" / "feature_maps.npz"
        if source.exists():
            atomic_write_bytes(out / f"{dataset}__{model}__seed={run.seed}.npz", source.read_bytes())
            copied += 1
    return copied


def class_counts(study: Study, prepared_root: Path) -> pd.DataFrame:
    rows = []
    for dataset in study.datasets:
        meta = json.loads((prepared_root / dataset / "meta.json").read_text())
        for split, counts in meta["class_counts"].items():
            rows += [{"dataset": dataset, "split": split, "class": name, "count": int(n)}
                     for name, n in zip(meta["class_names"], counts)]
    return pd.DataFrame(rows)


def _csv(df: pd.DataFrame) -> str:
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


@exit_on_config_error
def collect(params_file: str = "params.yaml", runs_root: str = "runs", out_dir: str = "reports/metrics",
            prepared_root: str = "data/prepared") -> pd.DataFrame:
    study = load_study(params_file)
    epochs, runs = read_runs(study, Path(runs_root))
    epochs = add_derived(epochs).sort_values(["dataset", "model", "seed", "epoch"]).reset_index(drop=True)
    out = Path(out_dir)
    parquet = io.BytesIO()
    epochs.to_parquet(parquet, index=False)
    atomic_write_bytes(out / "epochs.parquet", parquet.getvalue())
    atomic_write_text(out / "epochs.csv", _csv(epochs))
    run_table = summarize_runs(epochs, runs)
    atomic_write_text(out / "runs.csv", _csv(run_table))
    atomic_write_json(out / "summary.json", metrics_summary(run_table))
    predictions = io.BytesIO()
    median_seed_predictions(run_table, Path(runs_root)).to_parquet(predictions, index=False)
    atomic_write_bytes(out / "predictions.parquet", predictions.getvalue())
    atomic_write_text(out / "class_counts.csv", _csv(class_counts(study, Path(prepared_root))))
    with atomic_directory(out / "feature_maps") as maps_dir:
        copy_feature_maps(run_table, Path(runs_root), maps_dir)
    curves = mean_curves(epochs)
    for (dataset, model), group in curves.groupby(["dataset", "model"]):
        atomic_write_text(out / "curves" / f"{dataset}__{model}.csv", _csv(group.drop(columns=["dataset", "model"])))
    print(f"collected {len(run_table)} runs, {len(epochs)} epoch rows -> {out}/", file=sys.stderr)
    return epochs


def main() -> None:
    collect()


if __name__ == "__main__":
    main()
