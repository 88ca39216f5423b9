"""Stage ``train``: one run per (dataset, model, seed); Hydra multirun sweeps the seeds.

    python -m overfitlab.train -m dataset=fashion_mnist model=deep_network   # seeds from params.yaml
    python -m overfitlab.train model=cnn_no_pool seed=3 train.epochs=5        # a single run

A run directory ``runs/<dataset>/<model>/seed=<n>/`` is complete only once ``done.json`` exists
and records the hash of everything that defines the run; a complete run with the same hash is
skipped, anything else there (half-written or stale) is removed and trained again.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from . import controls
from .data import PreparedDataset, TensorBatches, load_prepared
from .errors import exit_on_config_error, require
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text, git_commit, sha256_files, sha256_json
from .models import conv_feature_maps, count_parameters
from .study import conf_dir, preflight

# The source files whose content decides a run's numbers (also the train stage's deps in dvc.yaml).
TRAINING_CODE = ["train.py", "lightning_module.py", "models.py", "data.py", "controls.py"]
METRIC_ORDER = ["train_loss", "train_acc", "train_eval_loss", "train_eval_acc",
                "train_clean_acc", "train_corrupted_acc",
                "val_loss", "val_acc", "test_loss", "test_acc", "test_conf_wrong", "test_ece"]


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate(cfg: DictConfig) -> None:
    require(_positive_int(cfg.trainer.max_epochs),
            f"train.epochs={cfg.trainer.max_epochs!r} must be a positive integer (params.yaml or override)")
    require(_positive_int(cfg.trainer.batch_size),
            f"train.batch_size={cfg.trainer.batch_size!r} must be a positive integer")
    require(_positive_int(cfg.trainer.examples_per_step),
            f"trainer.examples_per_step={cfg.trainer.examples_per_step!r} must be a positive integer")
    image = cfg.trainer.feature_map_image
    require(isinstance(image, int) and not isinstance(image, bool) and image >= 0,
            f"trainer.feature_map_image={image!r} must be a test-image index (0, 1, ...)")
    stopping = cfg.trainer.early_stopping
    require(stopping.patience is None or _positive_int(stopping.patience),
            f"trainer.early_stopping.patience={stopping.patience!r} must be null (off) or a positive integer")
    require(stopping.monitor in ("val_acc", "val_loss") and stopping.mode in ("max", "min"),
            f"trainer.early_stopping: monitor {stopping.monitor!r} / mode {stopping.mode!r}; "
            "allowed: monitor val_acc or val_loss (never a test metric), mode max or min")
    require(_positive_int(cfg.trainer.eval_batch_size),
            f"trainer.eval_batch_size={cfg.trainer.eval_batch_size!r} must be a positive integer")
    lr = cfg.optimizer.get("lr")
    require(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0,
            f"train.lr={lr!r} must be a positive number")
    require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool) and cfg.seed >= 0,
            f"seed={cfg.seed!r} must be a non-negative integer (params.yaml: study.seeds)")
    controls.check(cfg.control.label_noise, cfg.control.pixels)


def run_identity(cfg: DictConfig, meta: dict) -> dict:
    """What defines a run's numbers: its hash keys the run directory's done-marker."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for speed_only in ("progress_bar", "examples_per_step"):  # no effect on the numbers (tested)
        trainer.pop(speed_only, None)
    return {
        "dataset": cfg.dataset.name,
        "data_version": meta["data_version"],
        "control": OmegaConf.to_container(cfg.control, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "trainer": trainer,
        "seed": int(cfg.seed),
        "training_code": sha256_files([Path(__file__).with_name(f) for f in TRAINING_CODE])[:16],
    }


def is_complete(run_dir: Path, config_hash: str) -> bool:
    done = run_dir / "done.json"
    if not done.exists():
        return False
    try:
        return json.loads(done.read_text()).get("config_hash") == config_hash
    except json.JSONDecodeError:
        return False


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*is not a `DataLoader`.*")
    warnings.filterwarnings("ignore", message=".*LitLogger.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def threads_per_run(launcher: DictConfig | None) -> int:
    """CPU threads for one run, so that (runs Hydra launches at once) x threads <= cores.

    The sequential launcher runs one run at a time: all cores. The joblib launcher
    (``hydra/launcher=joblib``) runs ``n_jobs`` at once (-1: one per core): cores are shared out.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parallel = 1
    if launcher is not None and "joblib" in str(launcher.get("_target_", "")):
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = cores if n_jobs < 0 else n_jobs
    return max(1, cores // parallel)


def _current_launcher() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher if HydraConfig.initialized() else None


def fit(cfg: DictConfig, data: PreparedDataset, on_epoch=None, extra_callbacks=(), corrupted=None):
    """Seed, build and train one model; returns (module, n_params, device name).

    ``corrupted`` (one bool per training example) splits the running training accuracy into
    ``train_clean_acc`` and ``train_corrupted_acc``.
    """
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import RichProgressBar

    from .lightning_module import Classifier, StopWhenValidationStalls

    _quiet_lightning()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    torch.set_num_threads(int(cfg.trainer.threads or threads_per_run(_current_launcher())))
    L.seed_everything(int(cfg.seed), workers=False, verbose=False)
    net = instantiate(cfg.model.net, in_channels=data.in_channels, image_size=data.image_size,
                      num_classes=data.num_classes)
    extra_tests = [s for s in data.images if s.startswith("test@")]  # named extra test sets
    eval_names = ["val", "test"] + extra_tests + (["train_eval"] if cfg.trainer.train_eval_pass else [])
    module = Classifier(net, instantiate(cfg.optimizer), eval_names, batch_size=cfg.trainer.batch_size)
    if on_epoch is not None:
        module.epoch_listeners.append(on_epoch)
    stopping = cfg.trainer.early_stopping
    if stopping.patience:
        module.epoch_listeners.append(StopWhenValidationStalls(module, stopping.monitor, stopping.patience, stopping.mode))
    eval_sets = {"val": "val", "test": "test", "train_eval": "train", **{s: s for s in extra_tests}}
    eval_loaders = [TensorBatches(data.images[eval_sets[n]], data.labels[eval_sets[n]], cfg.trainer.eval_batch_size)
                    for n in eval_names]
    # Chunks of consecutive minibatches; the module splits them back (see lightning_module.py).
    train_loader = TensorBatches(data.images["train"], data.labels["train"],
                                 cfg.trainer.batch_size * max(1, cfg.trainer.examples_per_step // cfg.trainer.batch_size),
                                 shuffle=True, seed=int(cfg.seed),
                                 flags=corrupted if corrupted is not None and corrupted.any() else None)
    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs, accelerator=cfg.trainer.accelerator, devices=1,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=True,
        enable_progress_bar=bool(cfg.trainer.progress_bar),
        callbacks=([RichProgressBar(refresh_rate=10, leave=False)] if cfg.trainer.progress_bar else [])
        + list(extra_callbacks),
    )
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=eval_loaders)
    require(len(module.history) == cfg.trainer.max_epochs or stopping.patience, "training stopped before the last epoch")
    device = str(trainer.strategy.root_device)
    if device == "cpu":  # the thread count changes float summation order, hence the last digits
        device = f"cpu ({torch.get_num_threads()} threads)"
    return module, count_parameters(net), device


@exit_on_config_error
def train(cfg: DictConfig) -> dict | None:
    from rich.console import Console

    from .tracking import RunLogger

    console = Console(stderr=True, soft_wrap=True)
    validate(cfg)
    data = load_prepared(cfg.paths.prepared)
    n_test = len(data.labels["test"])
    require(cfg.trainer.feature_map_image < n_test,
            f"trainer.feature_map_image={cfg.trainer.feature_map_image} but the test split has {n_test} images")
    identity = run_identity(cfg, data.meta)
    config_hash = sha256_json(identity)[:12]
    run_dir = Path(cfg.paths.run_dir)
    label = f"{cfg.data_label} {cfg.model.name} seed={cfg.seed}"
    if is_complete(run_dir, config_hash):
        console.print(f"[dim]= {label}: already trained with this config ({run_dir}), skipped[/dim]")
        return json.loads((run_dir / "done.json").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)  # half-written or from another config
    run_dir.mkdir(parents=True)
    original_labels = data.labels["train"]
    corrupted = controls.apply_controls(data.images, data.labels, data.num_classes, **cfg.control)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    commit = git_commit()
    tags = {"dataset": cfg.data_label, "model": cfg.model.name, "seed": str(cfg.seed),
            "git_commit": commit, "data_version": data.meta["data_version"], "config_hash": config_hash,
            "run_key": f"{cfg.data_label}/{cfg.model.name}/seed={cfg.seed}/{config_hash}",
            "run_dir": str(run_dir), "study": cfg.study.name}
    mlflow_run = RunLogger(cfg, resolved, tags, run_name=f"{cfg.model.name} seed={cfg.seed}")
    start = time.perf_counter()
    try:
        module, n_params, device = fit(cfg, data, on_epoch=mlflow_run.log_epoch, corrupted=corrupted)
    except BaseException:
        mlflow_run.finish([], status="KILLED")
        raise
    wall = time.perf_counter() - start

    table = pd.DataFrame(module.history)
    table.insert(0, "seed", int(cfg.seed))
    table.insert(0, "model", cfg.model.name)
    table.insert(0, "dataset", cfg.data_label)
    columns = ["dataset", "model", "seed", "epoch"] + [c for c in METRIC_ORDER if c in table] \
        + sorted(c for c in table if c.startswith("test_") and "/" in c)  # test_acc/<name> of extra test sets
    atomic_write_text(run_dir / "metrics.csv", table[columns].to_csv(index=False))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    # Final test predictions (label, predicted, confidence) for confusion matrices and the like.
    buffer = io.BytesIO()
    np.save(buffer, torch.cat(module.test_predictions).numpy())
    atomic_write_bytes(run_dir / "test_predictions.npy", buffer.getvalue())
    image_index = int(cfg.trainer.feature_map_image)
    maps = conv_feature_maps(module.net, data.images["test"][image_index])
    if maps:  # what each convolution makes of one test image, for the report
        buffer = io.BytesIO()
        np.savez_compressed(buffer, image_index=np.int64(image_index),
                            **{k: v.numpy().astype(np.float16) for k, v in maps.items()})
        atomic_write_bytes(run_dir / "feature_maps.npz", buffer.getvalue())
    if corrupted.any():  # which training examples the control relabelled
        relabelled = pd.DataFrame({"example": range(len(corrupted)), "original_label": original_labels.numpy(),
                                   "label": data.labels["train"].numpy(), "corrupted": corrupted.numpy()})
        atomic_write_text(run_dir / "train_labels.csv", relabelled.to_csv(index=False))
    final = table.iloc[-1]
    summary = {"dataset": cfg.data_label, "model": cfg.model.name, "seed": int(cfg.seed),
               "config_hash": config_hash, "data_version": data.meta["data_version"], "git_commit": commit,
               "class_names": data.meta["class_names"], "n_params": n_params,
               "epochs": len(table), "wall_time_s": round(wall, 3), "device": device, "mlflow_run_id": mlflow_run.run_id,
               "final": {c: float(final[c]) for c in columns[4:]}}
    mlflow_run.client.set_tag(mlflow_run.run_id, "device", device)
    mlflow_run.finish([run_dir / "metrics.csv", run_dir / "config.yaml"],
                      extra_metrics={"n_params": n_params, "wall_time_s": wall})
    atomic_write_json(run_dir / "done.json", summary)  # last: marks the run complete
    console.print(f"[green]✓[/green] {label}: test_acc {final['test_acc']:.2%} "
                  f"(train_acc {final['train_acc']:.2%}), {n_params:,} params, {wall:.1f} s on {device}")
    return summary


# params.yaml is read from the working directory (the study), conf/ from the project root.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    preflight(sys.argv[1:])
    main()
