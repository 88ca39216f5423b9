"""The numbers behind the report: small tables computed from collect's outputs.

Every figure is drawn from one of these, and the tests check them rather than pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..runs import extra_test_sets
from .stats import accuracy_ci

BAND_LEVEL = 0.95


def final_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the box plot: final test accuracy (percent) of every run. Each extra test
    set of an image-folder dataset is a panel of its own, named ``<dataset> | test@<name>``."""
    keys = ["dataset", "model", "seed"]
    frames = [runs[keys + ["final_test_acc"]]]
    for name in extra_test_sets(runs.columns):
        column = f"final_test_acc/{name}"
        extra = runs.loc[runs[column].notna(), keys + [column]].rename(columns={column: "final_test_acc"})
        frames.append(extra.assign(dataset=extra["dataset"] + f" | test@{name}"))
    table = pd.concat(frames, ignore_index=True)
    table["test_acc_pct"] = 100.0 * table.pop("final_test_acc")
    return table.sort_values(["dataset", "model", "seed"]).reset_index(drop=True)


def curve_bands(
    epochs: pd.DataFrame, metrics: list[str], level: float = BAND_LEVEL, log: bool = False
) -> pd.DataFrame:
    """Mean over seeds per (dataset, model, metric, epoch) with a t-based confidence band.

    The band is mean +/- t(n-1) * sd / sqrt(n): with the few seeds a study affords, the
    t quantile (not 1.96) is what makes it a 95 % interval. With one seed the band is the line.
    With ``log`` (a quantity drawn on a log axis, such as a loss) the mean and the band are taken
    of the logarithm and turned back: the geometric mean with a band that stays above zero, where
    the linear band's lower edge can reach zero or below and fall out of a log plot.
    """
    from scipy import stats

    long = epochs.melt(
        id_vars=["dataset", "model", "seed", "epoch"],
        value_vars=metrics,
        var_name="metric",
        value_name="value",
    ).dropna(subset=["value"])  # extra test sets
    if log:
        long = long[long["value"] > 0].assign(value=lambda d: np.log(d["value"]))
    grouped = long.groupby(["dataset", "model", "metric", "epoch"], sort=True)["value"]
    bands = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    half = stats.t.ppf(0.5 + level / 2, (bands["n"] - 1).clip(lower=1)) * bands["sd"] / np.sqrt(bands["n"])
    half = half.where(bands["n"] > 1, 0.0).fillna(0.0)
    bands["low"], bands["high"] = bands["mean"] - half, bands["mean"] + half
    if log:
        bands[["mean", "low", "high"]] = np.exp(bands[["mean", "low", "high"]])
    return bands


def percent(bands: pd.DataFrame, clip: bool = True) -> pd.DataFrame:
    """Fractions -> percent; accuracy bands are clipped to the possible 0..100 %."""
    bands = bands.copy()
    bands[["mean", "low", "high"]] *= 100
    if clip:
        bands[["low", "high"]] = bands[["low", "high"]].clip(0, 100)
    return bands


def _median(values: pd.Series) -> float:
    return float(values.median()) if values.notna().any() else float("nan")


def summary_table(runs: pd.DataFrame, n_test: dict[str, int] | None = None) -> pd.DataFrame:
    """Per dataset and model: parameters, seeds, final accuracies (mean, sd, 95 % interval of the mean:
    ``stats.accuracy_ci`` with the test set's size ``n_test[dataset]``, where given),
    the validation-chosen alternative (epoch of best val_acc, test accuracy there) and, apart,
    the oracle (max over epochs of test acc: chosen on the test set, optimistic)."""
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        low, high = accuracy_ci(g["final_test_acc"], (n_test or {}).get(dataset))
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "params": int(g["n_params"].iloc[0]),
                "seeds": len(g),
                "test_acc_mean": 100 * g["final_test_acc"].mean(),
                "test_acc_sd": 100 * g["final_test_acc"].std(ddof=1) if len(g) > 1 else float("nan"),
                "test_acc_ci_low": 100 * low,
                "test_acc_ci_high": 100 * high,
                "train_acc_mean": 100 * g["final_train_acc"].mean(),
                "gap_mean": 100 * g["final_gap_acc"].mean(),
                "best_val_epoch_median": _median(g["best_val_epoch"]),
                "test_acc_at_best_val_mean": 100 * g["test_acc_at_best_val"].mean(),
                "oracle_best_test_acc_mean": 100 * g["oracle_best_test_acc"].mean(),
                "fit_epoch_median": _median(g["fit_epoch"]),
                "seeds_fitted": int(g["fit_epoch"].notna().sum()),
                "seeds_at_chance": int(g["at_chance"].sum()) if "at_chance" in g else 0,
                "conf_wrong_mean": 100 * g.get("final_test_conf_wrong", pd.Series(dtype=float)).mean(),
                "ece_mean": g.get("final_test_ece", pd.Series(dtype=float)).mean(),
                **{
                    f"test_acc_mean/{n}": 100 * g[f"final_test_acc/{n}"].mean()
                    for n in extra_test_sets(g.columns)
                },  # extra test sets of image folders
            }
        )
    return pd.DataFrame(rows)


def confusion(predictions: pd.DataFrame) -> pd.DataFrame:
    """Counts per (dataset, model, true label, predicted label), with the row-normalized fraction."""
    counts = predictions.groupby(["dataset", "model", "label", "predicted"]).size()
    counts = counts.rename("count").reset_index()
    per_true = counts.groupby(["dataset", "model", "label"])["count"].transform("sum")
    counts["fraction_of_true"] = counts["count"] / per_true
    return counts


def per_class_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall and F1 per class for each (dataset, model); a class never predicted gets
    precision 0."""
    rows = []
    for (dataset, model), p in predictions.groupby(["dataset", "model"], sort=True):
        for name in sorted(set(p["label"]) | set(p["predicted"])):
            tp = int(((p.label == name) & (p.predicted == name)).sum())
            predicted, actual = int((p.predicted == name).sum()), int((p.label == name).sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "seed": int(p.seed.iloc[0]),
                    "class": name,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "support": actual,
                }
            )
    return pd.DataFrame(rows)


def is_geometric(values) -> bool:
    """Positive numbers spanning at least a factor of 10 (learning rates, widths, sizes): a log axis."""
    numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce")
    return bool(numbers.notna().all() and (numbers > 0).all() and numbers.max() >= 10 * numbers.min())


def null_named(runs: pd.DataFrame, columns) -> pd.DataFrame:
    """``runs`` with a null axis value (e.g. ``model.dropout: null``, "the model's own") written
    ``null``: a value like any other, grouped, compared and shown, never dropped as missing."""
    runs = runs.copy()
    for column in columns:
        runs[column] = runs[column].astype(object).where(runs[column].notna(), "null")
    return runs


def axis_table(
    runs: pd.DataFrame, axis: str, others: list[str], n_test: dict[str, int] | None = None
) -> pd.DataFrame:
    """Per (dataset, the other axes' values, model, value of ``axis``): the study's question against
    the axis (percent). Test accuracy with the 95 % t-interval of its mean, final training accuracy
    (on the kept and on the changed labels when a label control changed any), the gap and the time
    to fit (median epoch over the seeds that reached 99 %)."""
    rows = []
    keys = ["source_dataset", *others, "model", axis]
    for values, g in runs.groupby(keys, sort=True, dropna=False):
        low, high = accuracy_ci(g["final_test_acc"], (n_test or {}).get(g["dataset"].iloc[0]))
        changed = g.get("labels_changed", pd.Series(0, index=g.index)).fillna(0).gt(0).all()
        train = 100 * g["final_train_acc"].mean()
        rows.append(
            {
                **dict(zip(["dataset", *others, "model", axis], values, strict=True)),
                "seeds": len(g),
                "test_acc_mean": 100 * g["final_test_acc"].mean(),
                "test_acc_ci_low": 100 * low,
                "test_acc_ci_high": 100 * high,
                "train_acc_mean": train,
                "gap_mean": 100 * g["final_gap_acc"].mean(),
                "train_clean_acc_mean": 100 * g["final_train_clean_acc"].mean() if changed else train,
                "train_corrupted_acc_mean": 100 * g["final_train_corrupted_acc"].mean()
                if changed
                else float("nan"),
                "fit_epoch_median": _median(g["fit_epoch"]),
                "seeds_fitted": int(g["fit_epoch"].notna().sum()),
                "epochs": int(g["epochs"].max()),
            }
        )
    return pd.DataFrame(rows)


def class_order(counts: pd.DataFrame, predictions: pd.DataFrame) -> dict[str, list[str]]:
    """Class names per dataset (variant) in the prepared order (collect counts every variant)."""
    order = {d: list(dict.fromkeys(g["class"])) for d, g in counts.groupby("dataset")}
    for dataset in predictions["dataset"].unique():
        order.setdefault(dataset, sorted(set(predictions["label"])))
    return order


STUDY_CURVE_METRICS = ["train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss"]


def study_curves(epochs: pd.DataFrame, level: float = BAND_LEVEL) -> pd.DataFrame:
    """The study's learning curves per (dataset variant, model, metric, epoch) with the same
    statistics as the report's curve figures (``curve_bands``): accuracies as the mean over seeds
    with its t-band cut to [0, 1]; losses as the geometric mean with its band (taken on the log,
    as the loss figure's log axis draws them), ``stat`` says which. Fractions, not percent: the
    scale of the runs' own metrics. What the sweep's MLflow run gets
    (``tracking.aggregate.log_study_aggregate``)."""
    metrics = [m for m in STUDY_CURVE_METRICS if m in epochs]
    accuracies = [m for m in metrics if m.endswith("_acc")]
    losses = [m for m in metrics if m.endswith("_loss")]
    frames = []
    if accuracies:
        bands = curve_bands(epochs, accuracies, level)
        bands[["low", "high"]] = bands[["low", "high"]].clip(0.0, 1.0)
        frames.append(bands.assign(stat="mean"))
    if losses:
        frames.append(curve_bands(epochs, losses, level, log=True).assign(stat="gmean"))
    columns = ["dataset", "model", "metric", "stat", "epoch", "mean", "low", "high", "n"]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)[columns]
    order = {m: i for i, m in enumerate(STUDY_CURVE_METRICS)}
    table = table.assign(_order=table["metric"].map(order)).sort_values(
        ["dataset", "model", "_order", "epoch"]
    )
    return table.drop(columns="_order").reset_index(drop=True)
