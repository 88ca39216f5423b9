"""What collect computes from the runs it read: one row per run, the mean curves, ``summary.json``
(DVC metrics) and the class counts of the prepared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import extra_test_sets
from ..study import Study
from .currency import variants

CURVE_METRICS = ["train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss"]
KEYS = ["dataset", "model", "seed"]


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
