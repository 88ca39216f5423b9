"""The run record: one home for what a run is on disk.

A run is keyed by (dataset, model, its study axis values, seed) and the hash of everything that
defines its numbers (``identity``). Its directory is
``<runs root>/<dataset>/<model>/[<axis>=<value>/...]seed=<n>/`` (``run_dir``: the only place that
spells it; ``conf/train.yaml`` reaches it through the ``run_dir`` resolver). It is complete only
once ``done.json`` exists (written last) and names the current config hash; ``done.json`` and
``failed.json`` hold the records ``done_record`` and ``failed_record`` build. Its ``metrics.csv``
has one row per epoch with the columns ``metric_columns`` orders: every column the module
produced is kept, known ones first, so a new metric is never dropped.

What the hash covers, when a stored run is current and how one is reused elsewhere in a study is
``identity.py``'s; this module is the layout and the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_write_json

DONE = "done.json"
METRICS = "metrics.csv"
CONFIG = "config.yaml"
PREDICTIONS = "test_predictions.npy"
FEATURE_MAPS = "feature_maps.npz"
TRAIN_LABELS = "train_labels.csv"
TRAIN_EXAMPLES = "train_examples.npz"  # the per-example record: write_train_examples

KEY_COLUMNS = ["dataset", "model", "seed", "epoch"]
# Known metrics in the order a table shows them; any other column follows, sorted.
METRIC_ORDER = [
    "train_loss",
    "train_acc",
    "train_eval_loss",
    "train_eval_acc",
    "train_clean_acc",
    "train_corrupted_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "test_conf_wrong",
    "test_ece",
]

FAILED = "failed.json"


def checkpoint_file(directory: str | Path, config_hash: str) -> Path:
    """The run's training state after its last completed epoch (``training/checkpoint.py``), named
    by the config hash it belongs to: a run of another config never resumes from it. A vectorized
    seed group's one checkpoint is in its first run's directory."""
    return Path(directory) / f"checkpoint-{config_hash}.pt"


def run_dir(runs_root: str | Path, dataset: str, model: str, axis_values: dict, seed: int) -> Path:
    """``<runs_root>/<dataset>/<model>/[<axis>=<value>/...]seed=<n>``: where a run's files live."""
    from .axes import dir_parts

    return Path(runs_root, dataset, model, *dir_parts(axis_values), f"seed={int(seed)}")


def extra_test_sets(columns) -> list[str]:
    """Names of the extra test sets (image folders) from ``[final_]test_acc/<name>`` columns."""
    return sorted({c.split("/", 1)[1] for c in columns if c.removeprefix("final_").startswith("test_acc/")})


def metric_columns(columns) -> list[str]:
    """Key columns, the known metrics in their order, then every other column (sorted): none dropped."""
    present = list(columns)
    known = [c for c in METRIC_ORDER if c in present]
    return (
        [c for c in KEY_COLUMNS if c in present]
        + known
        + sorted(c for c in present if c not in KEY_COLUMNS and c not in known)
    )


def read_done(directory: str | Path) -> dict | None:
    """The run's ``done.json`` (None if missing or unreadable: the run is not complete)."""
    try:
        return json.loads((Path(directory) / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_done(directory: str | Path, summary: dict) -> None:
    """Written last, atomically: from now on the run counts as complete."""
    atomic_write_json(Path(directory) / DONE, summary)


def write_files(
    directory: Path,
    metrics,
    config_yaml: str,
    predictions=None,
    feature_maps: dict | None = None,
    relabelled=None,
) -> None:
    """A run's files other than ``done.json``, each written atomically: ``metrics`` (a DataFrame,
    columns ordered by ``metric_columns``), the resolved config, the final test predictions (array
    of label, predicted, confidence), conv feature maps of one test image, the relabelled training
    labels of a control."""
    import io

    import numpy as np

    from .files import atomic_write_bytes, atomic_write_text

    atomic_write_text(directory / METRICS, metrics[metric_columns(metrics.columns)].to_csv(index=False))
    atomic_write_text(directory / CONFIG, config_yaml)
    if predictions is not None:
        buffer = io.BytesIO()
        np.save(buffer, predictions)
        atomic_write_bytes(directory / PREDICTIONS, buffer.getvalue())
    if feature_maps:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **feature_maps)
        atomic_write_bytes(directory / FEATURE_MAPS, buffer.getvalue())
    if relabelled is not None:
        atomic_write_text(directory / TRAIN_LABELS, relabelled.to_csv(index=False))


def write_train_examples(directory: Path, correct, example, label, final_predicted) -> None:
    """The per-example record (``module.py``): ``correct`` (epochs x examples, bool: the training
    step classified the example correctly, in training mode) bit-packed along the examples; for
    each training example its row in the prepared data's ``manifest.csv`` (``example``), the label
    it was trained on and its eval-mode prediction after the last epoch. ~N/8 bytes per epoch."""
    import io

    import numpy as np

    from .files import atomic_write_bytes

    correct = np.asarray(correct, dtype=bool).reshape(-1, len(example))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        correct=np.packbits(correct, axis=1, bitorder="little"),
        n_examples=np.int64(len(example)),
        example=np.asarray(example, dtype=np.int64),
        label=np.asarray(label, dtype=np.int16),
        final_predicted=np.asarray(final_predicted, dtype=np.int16),
    )
    atomic_write_bytes(directory / TRAIN_EXAMPLES, buffer.getvalue())


def read_train_examples(directory: Path) -> dict:
    """``write_train_examples``' arrays, ``correct`` unpacked to bool (epochs x examples)."""
    import numpy as np

    with np.load(Path(directory) / TRAIN_EXAMPLES) as f:
        n = int(f["n_examples"])
        record = {k: f[k] for k in ("example", "label", "final_predicted")}
        record["correct"] = np.unpackbits(f["correct"], axis=1, count=n, bitorder="little").astype(bool)
    return record


def done_record(
    run, fitted, table, wall: float, data_meta: dict, commit: str, noise_record: dict, measures: dict
) -> dict:
    """``done.json``'s content for a trained run: who it is, where its numbers came from (code,
    config hash, data version, torch, device, machine) and its final metrics."""
    from .machine import hardware

    module = fitted.module
    columns = metric_columns(table.columns)
    final = table.iloc[-1] if len(table) else {}
    record = {
        "dataset": run.cfg.dataset.name,
        "model": run.cfg.model.name,
        "axes": run.axis_values,
        "seed": int(run.cfg.seed),
        "config_hash": run.config_hash,
        "measures": measures,  # each measure's fingerprint, so a changed one is never kept silently
        "data_version": data_meta["data_version"],
        "git_commit": commit,
        "class_names": data_meta["class_names"],
        "n_params": fitted.n_params,
        "epochs": len(table),
        "wall_time_s": round(wall, 3),
        "device": fitted.device,
        "torch": run.identity["torch"],
        "device_kind": run.identity["device_kind"],
        **hardware(),
        **noise_record,
        "pixels": str(run.cfg.control.pixels),
        "final": {c: float(final[c]) for c in columns if c not in KEY_COLUMNS} if len(table) else {},
        "weights_digests": list(module.weights_digests),  # per kept epoch: what a canary compares
    }
    if module.diverged:
        record |= {"status": "diverged", "diverged_epoch": module.diverged_epoch}
    return record


def failed_record(run, error: BaseException, traceback_text: str) -> dict:
    """``failed.json``'s content: the run, its config hash and the error (the run is retried next time)."""
    return {
        "run": run.label,
        "run_dir": str(run.run_dir),
        "config_hash": run.config_hash,
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback_text,
    }
