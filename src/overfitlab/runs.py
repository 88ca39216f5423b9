"""The run record: one home for what a run is on disk.

A run is keyed by (dataset, model, its study axis values, seed) and the hash of everything that
defines its numbers (``identity``). Its directory is
``<runs root>/<dataset>/<model>/[<axis>=<value>/...]seed=<n>/`` (``run_dir``: the only place that
spells it; ``conf/train.yaml`` reaches it through the ``run_dir`` resolver). It is complete only
once ``done.json`` exists (written last) and names the current config hash; ``done.json`` and
``failed.json`` hold the records ``done_record`` and ``failed_record`` build. Its ``metrics.csv``
has one row per epoch with the columns ``metric_columns`` orders: every column the module
produced is kept, known ones first, so a new metric is never dropped.

The identity's code part covers exactly the code a run's numbers depend on: the import closure
of the numerics path (data variant, controls, fitting) and of the run's own model family
(``numerics_code``), computed from the imports, never hand-listed. Orchestration (the Hydra
entry point, tracking, console output, collect, report) is outside it, and so is this module.

Why one file: it is the contract of a run on disk (names, identity, the records and the per-example
file); every stage reads it, and splitting it would give one contract two homes.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .files import atomic_write_json, sha256_json
from .imports import closure

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

PACKAGE = Path(__file__).resolve().parent
FAILED = "failed.json"


def checkpoint_file(directory: str | Path, config_hash: str) -> Path:
    """The run's training state after its last completed epoch (``training/checkpoint.py``), named
    by the config hash it belongs to: a run of another config never resumes from it. A vectorized
    seed group's one checkpoint is in its first run's directory."""
    return Path(directory) / f"checkpoint-{config_hash}.pt"


# The entry points of the numerics: what turns a prepared dataset, a config and a seed into a run's
# numbers. Their import closure, plus the run's model family, is the code a run's hash covers.
NUMERICS = ("overfitlab.data.datasets", "overfitlab.data.controls", "overfitlab.training.fitting")


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


def family_module(target: str) -> str | None:
    """The module of a model family's ``_target_`` (``overfitlab.training.models.mlp.MLP`` ->
    ``overfitlab.training.models.mlp``); None for a class outside the package."""
    module = str(target).rsplit(".", 1)[0]
    return module if module.startswith("overfitlab.") else None


def numerics_code(model_target: str | None = None, src: Path = PACKAGE.parent) -> list[Path]:
    """The files a run's numbers depend on: the closure of ``NUMERICS`` and of its model family
    (``src``: the directory holding the package, another copy of it in the tests)."""
    family = family_module(model_target) if model_target else None
    return closure([*NUMERICS, *([family] if family else [])], src)


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


@cache
def code_hash(model_target: str | None = None, src: Path = PACKAGE.parent) -> str:
    """One hash over ``numerics_code``: each file's path (relative to the package) and code."""
    digest = hashlib.sha256()
    for path in numerics_code(model_target, src):
        digest.update(path.relative_to(Path(src) / "overfitlab").as_posix().encode())
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


# What the identity leaves out: speed-only settings (tested to leave the numbers unchanged), the
# thread count and seed vectorizing, which change only the order of float sums (recorded in `device`),
# and the per-epoch checkpoint (a resumed run's numbers are an uninterrupted one's: tests/test_resume.py).
SPEED_ONLY_TRAINER_KEYS = (
    "progress_bar",
    "examples_per_step",
    "vectorize_seeds",
    "threads",
    "checkpoint",
    "keep_checkpoint",
)


def device_kind(accelerator: str) -> str:
    """``cuda`` or ``cpu``: where a run with this ``trainer.accelerator`` trains on this machine."""
    import torch

    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def without_nulls(value):
    """``value`` with every ``None`` entry of its mappings dropped, recursively: a new option whose
    default ``null`` means "as before" leaves existing runs' identity (and hash) unchanged."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def identity(cfg, meta: dict) -> dict:
    """What defines a run's numbers (its hash keys the done-marker): the resolved run config's
    dataset, controls, model, optimizer, trainer and seed, the prepared data's version, the code on
    its numerics path (``numerics_code``), the torch version and the device kind (a GPU or another
    torch gives other numbers). Null settings are left out (``without_nulls``)."""
    import torch
    from omegaconf import OmegaConf

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in SPEED_ONLY_TRAINER_KEYS:
        trainer.pop(key, None)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return without_nulls(
        {
            "dataset": cfg.dataset.name,
            "data_version": meta["data_version"],
            "control": OmegaConf.to_container(cfg.control, resolve=True),
            "model": model,
            "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
            "trainer": trainer,
            "seed": int(cfg.seed),
            "training_code": code_hash(str(model.get("net", {}).get("_target_", ""))),
            "torch": torch.__version__,
            "device_kind": device_kind(str(cfg.trainer.accelerator)),
        }
    )


@dataclass
class Run:
    """One run of the current config: its axis values, directory and the hash that keys it."""

    cfg: object  # the composed run config (DictConfig)
    identity: dict
    run_dir: Path
    axis_values: dict = field(default_factory=dict)

    @classmethod
    def of(cls, cfg, meta: dict) -> Run:
        """The run of a composed run config (``conf/train.yaml``) on the prepared data of ``meta``."""
        from .axes import run_values

        return cls(cfg, identity(cfg, meta), Path(cfg.paths.run_dir), run_values(cfg))

    @property
    def key(self) -> str:
        """``<dataset>/<model>/<axis>=<value>...``: the run without its seed."""
        from .axes import dir_parts

        return "/".join([self.cfg.dataset.name, self.cfg.model.name, *dir_parts(self.axis_values)])

    @property
    def label(self) -> str:
        """``fashion_mnist mlp lr=0.1 seed=0``: the run in console lines and failure lists."""
        from .axes import label

        parts = [self.cfg.dataset.name, self.cfg.model.name, label(self.axis_values), f"seed={self.cfg.seed}"]
        return " ".join(p for p in parts if p)

    @property
    def config_hash(self) -> str:
        return config_hash(self.identity)

    def complete(self) -> bool:
        return is_complete(self.run_dir, self.config_hash)


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


def done_record(run, fitted, table, wall: float, data_meta: dict, commit: str, noise_record: dict) -> dict:
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
