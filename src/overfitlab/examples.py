"""Which training examples a network learned, forgot and memorized: per-example measures of the
runs' per-example record (``runs.write_train_examples``), for collect.

From each run's record (epochs x examples: the training step classified the example correctly,
in training mode, before that minibatch's update), per run and example:

* ``learned_epoch``: the first epoch after which the example stays correct to the end (Arpit et al.
  2017's learning order); empty when it is wrong at the last epoch;
* ``forgetting_events``: correct at one epoch, wrong at the next (Toneva et al. 2019);
* ``never_correct``: never classified correctly in any epoch (Toneva et al.'s "never learned");
  ``unforgettable``: correct at some epoch and never forgotten;
* ``final_correct``: the final net, in eval mode, classifies it correctly.

Across the seeds of one (dataset variant, model), per example (``consistency``): the share of seeds
whose final net classifies it correctly (Jiang et al. 2021's consistency, C-score-like, over the
study's seeds) and the mean learned epoch. With a label control, ``changed`` says whether the
example was trained on a label the control changed (``original_label`` the true one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .runs import TRAIN_EXAMPLES, TRAIN_LABELS, read_train_examples

RUN_KEYS = ["dataset", "model", "seed"]


def learning_events(correct: np.ndarray) -> dict[str, np.ndarray]:
    """Per example (columns of ``correct``, epochs x examples bool): learned epoch (1-based, NaN if
    wrong at the last epoch), forgetting events, never correct."""
    correct = np.asarray(correct, dtype=bool)
    epochs = correct.shape[0]
    wrong = ~correct
    # the last epoch (1-based) at which the example was wrong; 0 if never
    last_wrong = np.where(wrong.any(0), epochs - np.argmax(wrong[::-1], axis=0), 0)
    learned = np.where(correct[-1], last_wrong + 1, np.nan) if epochs else np.full(correct.shape[1], np.nan)
    forgetting = (correct[:-1] & ~correct[1:]).sum(0)
    return {
        "learned_epoch": learned,
        "forgetting_events": forgetting.astype(np.int32),
        "never_correct": ~correct.any(0),
    }


def run_examples(run: pd.Series, runs_root: Path, class_names: list[str]) -> pd.DataFrame:
    """One row per training example of one run (see the module docstring)."""
    directory = runs_root / run["run_dir"]
    record = read_train_examples(directory)
    events = learning_events(record["correct"])
    label = record["label"].astype(int)
    table = pd.DataFrame(
        {
            "dataset": run["dataset"],
            "model": run["model"],
            "seed": int(run["seed"]),
            "example": record["example"],
            "label": label,
            "class": np.asarray(class_names, dtype=object)[label],
            **events,
            "unforgettable": ~events["never_correct"] & (events["forgetting_events"] == 0),
            "final_correct": record["final_predicted"] == label,
        }
    )
    relabelled = directory / TRAIN_LABELS
    if relabelled.exists():
        control = pd.read_csv(relabelled)
        table["original_label"] = control["original_label"].to_numpy()
        table["changed"] = control["corrupted"].to_numpy().astype(bool)
    else:
        table["original_label"] = label
        table["changed"] = False
    return table


def collect_examples(run_table: pd.DataFrame, runs_root: Path) -> pd.DataFrame:
    """The per-example table of every run (run x example); runs without a record are left out."""
    frames = []
    for _, run in run_table.iterrows():
        if not (runs_root / run["run_dir"] / TRAIN_EXAMPLES).exists():
            continue
        frames.append(run_examples(run, runs_root, list(run["class_names"])))
    if not frames:
        return pd.DataFrame(columns=[*RUN_KEYS, "example"])
    return pd.concat(frames, ignore_index=True)


def consistency(examples: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset variant, model, example): share of seeds whose final net gets it right, mean
    learned epoch (over the seeds that learned it), seeds that learned it, mean forgetting events."""
    if examples.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "example", "label", "class", "original_label", "changed"]
    grouped = examples.groupby(keys, sort=True, observed=True)
    return grouped.agg(
        seeds=("seed", "size"),
        consistency=("final_correct", "mean"),
        mean_learned_epoch=("learned_epoch", "mean"),
        seeds_learned=("learned_epoch", "count"),
        mean_forgetting_events=("forgetting_events", "mean"),
    ).reset_index()


def summary(examples: pd.DataFrame) -> dict:
    """Per dataset variant and model (and kept vs changed labels under a control): the share of
    unforgettable and never-correct examples, the median learned epoch and the mean forgetting events
    (pooled over seeds and examples), for summary.json and docs/randomization.md's table."""
    out: dict = {}
    if examples.empty:
        return out
    for (dataset, model), group in examples.groupby(["dataset", "model"], sort=True):
        parts = {"all": group}
        if group["changed"].any():
            parts |= {"kept_labels": group[~group["changed"]], "changed_labels": group[group["changed"]]}
        out.setdefault(dataset, {})[model] = {
            name: {
                "examples": int(len(part)),
                "unforgettable_share": round(float(part["unforgettable"].mean()), 4),
                "never_correct_share": round(float(part["never_correct"].mean()), 4),
                "median_learned_epoch": _median(part["learned_epoch"]),
                "learned_by_end_share": round(float(part["learned_epoch"].notna().mean()), 4),
                "mean_forgetting_events": round(float(part["forgetting_events"].mean()), 4),
            }
            for name, part in parts.items()
        }
    return out


def _median(values: pd.Series) -> float | None:
    """Median learned epoch, counting examples not learned by the end as later than any epoch."""
    filled = values.fillna(np.inf)
    median = float(np.median(filled)) if len(filled) else float("nan")
    return None if not np.isfinite(median) else median
