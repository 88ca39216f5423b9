"""The median seed: of each (dataset, model), the run the report shows as typical (its predictions
and conv feature maps), chosen by its final test accuracy, not the best run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_bytes
from ..runs import FEATURE_MAPS, PREDICTIONS, read_done
from .summaries import KEYS


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
