"""The run record: one home for what a run is on disk.

A run is keyed by (data label, model, seed) and the hash of everything that defines its numbers
(``identity``). Its directory is ``<runs root>/<data label>/<model>/seed=<n>/`` (``run_dir``: the
only place that spells it; ``conf/train.yaml`` reaches it through the ``run_dir`` resolver). It is
complete only once ``done.json`` exists (written last) and names the current config hash. Its
``metrics.csv`` has one row per epoch with the columns ``metric_columns`` orders: every column
the module produced is kept, known ones first, so a new metric is never dropped.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from .files import atomic_write_json, sha256_json

DONE = "done.json"
METRICS = "metrics.csv"
CONFIG = "config.yaml"
PREDICTIONS = "test_predictions.npy"
FEATURE_MAPS = "feature_maps.npz"
TRAIN_LABELS = "train_labels.csv"

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

PACKAGE = Path(__file__).resolve().parent
# The source files whose content decides a run's numbers (the train stage's code deps in dvc.yaml
# are checked against what it imports: tests/test_stage_deps.py).
TRAINING_CODE = ["__init__.py", "train.py", "runs.py", "training", "data/datasets.py", "data/controls.py"]


def run_dir(runs_root: str | Path, data_label: str, model: str, seed: int) -> Path:
    """``<runs_root>/<data label>/<model>/seed=<n>``: where a run's files live."""
    return Path(runs_root) / data_label / model / f"seed={int(seed)}"


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


def training_code_files() -> list[Path]:
    files = []
    for entry in TRAINING_CODE:
        path = PACKAGE / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def code_fingerprint(source: str) -> str:
    """What a module's code does, without its layout: the syntax tree with docstrings dropped, so
    reformatting, comments and docstrings do not retrain a study, while any change to the code does."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def training_code_hash() -> str:
    """One hash over the training code: each file's path (relative to the package) and code."""
    digest = hashlib.sha256()
    for path in training_code_files():
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(code_fingerprint(path.read_text()).encode())
    return digest.hexdigest()[:16]


def config_hash(identity: dict) -> str:
    return sha256_json(identity)[:12]


def read_done(directory: str | Path) -> dict | None:
    """The run's ``done.json`` (None if missing or unreadable: the run is not complete)."""
    try:
        return json.loads((Path(directory) / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(directory: str | Path, expected_hash: str | None = None) -> bool:
    done = read_done(directory)
    return done is not None and (expected_hash is None or done.get("config_hash") == expected_hash)


def write_done(directory: str | Path, summary: dict) -> None:
    """Written last, atomically: from now on the run counts as complete."""
    atomic_write_json(Path(directory) / DONE, summary)


# What the identity leaves out: speed-only settings (tested to leave the numbers unchanged), and the
# thread count and seed vectorizing, which change only the order of float sums (recorded in `device`).
SPEED_ONLY_TRAINER_KEYS = ("progress_bar", "examples_per_step", "vectorize_seeds", "threads")


def device_kind(accelerator: str) -> str:
    """``cuda`` or ``cpu``: where a run with this ``trainer.accelerator`` trains on this machine."""
    import torch

    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def identity(cfg, meta: dict) -> dict:
    """What defines a run's numbers (its hash keys the done-marker): the resolved run config's
    dataset, controls, model, optimizer, trainer and seed, the prepared data's version, the training
    code, the torch version and the device kind (a GPU or another torch gives other numbers)."""
    import torch
    from omegaconf import OmegaConf

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in SPEED_ONLY_TRAINER_KEYS:
        trainer.pop(key, None)
    return {
        "dataset": cfg.dataset.name,
        "data_version": meta["data_version"],
        "control": OmegaConf.to_container(cfg.control, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "trainer": trainer,
        "seed": int(cfg.seed),
        "training_code": training_code_hash(),
        "torch": torch.__version__,
        "device_kind": device_kind(str(cfg.trainer.accelerator)),
    }


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
