"""Stage ``train``: one run per (dataset, model, seed); Hydra multirun sweeps the seeds.

    python -m overfitlab.train -m dataset=fashion_mnist model=deep_network   # seeds from params.yaml
    python -m overfitlab.train model=cnn_no_pool seed=3 train.epochs=5        # a single run

A run directory ``runs/<dataset>/<model>/seed=<n>/`` is complete only once ``done.json`` exists
and records the hash of everything that defines the run; a complete run with the same hash is
skipped, anything else there (half-written or stale) is removed and trained again.

With ``trainer.vectorize_seeds`` on, the first job of a multirun for a (dataset, model, control,
...) configuration trains all the sweep's seeds of it at once, as one vectorized model
(``fit_seeds``), and writes every seed's run directory and MLflow run as a sequential run would;
the later jobs of those seeds find their runs complete and skip them.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .data import controls
from .data.datasets import PreparedDataset, load_prepared
from .training.batches import SeedBatches, TensorBatches
from .errors import exit_on_config_error, require
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text, git_commit, sha256_files, sha256_json
from .training.models import conv_feature_maps, count_parameters
from .runs import training_code_hash
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
    vectorize = cfg.trainer.vectorize_seeds
    require(isinstance(vectorize, bool) or vectorize == "auto",
            f"trainer.vectorize_seeds={vectorize!r}; allowed: auto, true, false")
    require(isinstance(cfg.trainer.allow_tf32, bool),
            f"trainer.allow_tf32={cfg.trainer.allow_tf32!r}; allowed: true, false")
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
    # Vectorized seeds change only the order of float sums (tested), like the thread count: not
    # part of the identity either, both are recorded in `device`.
    trainer.pop("vectorize_seeds", None)
    return {
        "dataset": cfg.dataset.name,
        "data_version": meta["data_version"],
        "control": OmegaConf.to_container(cfg.control, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "trainer": trainer,
        "seed": int(cfg.seed),
        "training_code": training_code_hash(),
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


def parallel_runs(launcher: DictConfig | None) -> int:
    """How many runs Hydra's launcher runs at once: the joblib launcher's ``n_jobs`` (-1: one per core), else 1."""
    if launcher is not None and "joblib" in str(launcher.get("_target_", "")):
        n_jobs = int(launcher.get("n_jobs") or 1)
        return _cores() if n_jobs < 0 else n_jobs
    return 1


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_run(launcher: DictConfig | None) -> int:
    """CPU threads for one run, so that (runs Hydra launches at once) x threads <= cores.

    The sequential launcher runs one run at a time: all cores. The joblib launcher
    (``hydra/launcher=joblib``) runs ``n_jobs`` at once (-1: one per core): cores are shared out.
    """
    return max(1, _cores() // parallel_runs(launcher))


def _current_launcher() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher if HydraConfig.initialized() else None


def _classifier(cfg: DictConfig, data: PreparedDataset, on_epoch=None):
    """Seed and build the net exactly as a run of ``cfg.seed`` does; wrap it with its metrics."""
    import lightning as L
    from hydra.utils import instantiate

    from .training.module import Classifier, StopWhenValidationStalls

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
    return module


def _eval_batches(cfg: DictConfig, data: PreparedDataset, eval_names: list[str]) -> list[TensorBatches]:
    splits = {"val": "val", "test": "test", "train_eval": "train"}
    return [TensorBatches(data.images[splits.get(n, n)], data.labels[splits.get(n, n)], cfg.trainer.eval_batch_size)
            for n in eval_names]


def _train_batches(cfg: DictConfig, data: PreparedDataset, corrupted) -> TensorBatches:
    # Chunks of consecutive minibatches; the module splits them back (see lightning_module.py).
    return TensorBatches(data.images["train"], data.labels["train"],
                         cfg.trainer.batch_size * max(1, cfg.trainer.examples_per_step // cfg.trainer.batch_size),
                         shuffle=True, seed=int(cfg.seed),
                         flags=corrupted if corrupted is not None and corrupted.any() else None)


def _setup_torch(cfg: DictConfig) -> None:
    import lightning  # noqa: F401  (imported here first: it sets the variable dropped below)

    _quiet_lightning()
    # Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that forked DataLoader workers
    # find CUDA uninitialized). With it every torch.cuda.is_available() queries NVML again (~40 us
    # instead of ~1 us on the CPU machine), and torch's optimizers ask on every step: +150 us per
    # Adam step, ~12 % of a small model's step (benchmarks/README.md). Runs here never fork a
    # process that uses CUDA (batches are sliced in-process; the joblib launcher starts fresh ones).
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    torch.set_num_threads(int(cfg.trainer.threads or threads_per_run(_current_launcher())))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(cfg.trainer.allow_tf32)


def _trainer(cfg: DictConfig, extra_callbacks):
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar

    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs, accelerator=cfg.trainer.accelerator, devices=1,
        precision="32-true",  # what the bare optimizer steps in lightning_module.py assume
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=True,
        enable_progress_bar=bool(cfg.trainer.progress_bar),
        callbacks=([RichProgressBar(refresh_rate=10, leave=False)] if cfg.trainer.progress_bar else [])
        + list(extra_callbacks),
    )
    # deterministic=True also fills every new tensor with NaN (a fill kernel per allocation on a GPU):
    # a debugging aid for reads of unwritten memory, which correct code does not do; the numbers
    # stay bit-identical without it (tests/test_training_path.py, test_train.py).
    torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer


def _on_device(trainer, data: PreparedDataset, corrupted):
    """The data (and corrupted-label mask) on the trainer's device, once: on a GPU, batches are then
    sliced there instead of copied from the host at every step (the caller's copy stays as it is)."""
    device = trainer.strategy.root_device
    return data.to(device), (corrupted.to(device) if corrupted is not None else None)


def _device(trainer, seeds: int = 1) -> str:
    """Where it trained; on a CPU the thread count (it changes float summation order, hence the last digits)."""
    notes = ([f"{torch.get_num_threads()} threads"] if trainer.strategy.root_device.type == "cpu" else []) \
        + ([f"{seeds} seeds vectorized"] if seeds > 1 else [])
    device = str(trainer.strategy.root_device)
    return f"{device} ({', '.join(notes)})" if notes else device


def fit(cfg: DictConfig, data: PreparedDataset, on_epoch=None, extra_callbacks=(), corrupted=None):
    """Seed, build and train one model; returns (module, n_params, device name).

    ``corrupted`` (one bool per training example) splits the running training accuracy into
    ``train_clean_acc`` and ``train_corrupted_acc``.
    """
    _setup_torch(cfg)
    module = _classifier(cfg, data, on_epoch)
    trainer = _trainer(cfg, extra_callbacks)
    data, corrupted = _on_device(trainer, data, corrupted)
    trainer.fit(module, train_dataloaders=_train_batches(cfg, data, corrupted),
                val_dataloaders=_eval_batches(cfg, data, module.eval_names))
    require(len(module.history) == cfg.trainer.max_epochs or cfg.trainer.early_stopping.patience,
            "training stopped before the last epoch")
    return module, count_parameters(module.net), _device(trainer)


def fit_seeds(cfgs: list[DictConfig], data: PreparedDataset, on_epochs: list, extra_callbacks=(), corrupted=None):
    """Train the runs ``cfgs`` (one config, several seeds) at once as one vectorized model.

    Each seed's net is seeded and built, and its data ordered, exactly as ``fit`` does for that
    seed alone (see ``lightning_module.SeedStack``); returns ``fit``'s triple per seed.
    """
    from hydra.utils import instantiate

    from .training.module import SeedStack

    cfg = cfgs[0]
    _setup_torch(cfg)
    members = [_classifier(c, data, on_epoch) for c, on_epoch in zip(cfgs, on_epochs)]
    stack = SeedStack(members, instantiate(cfg.optimizer), batch_size=cfg.trainer.batch_size)
    trainer = _trainer(cfg, extra_callbacks)
    data, corrupted = _on_device(trainer, data, corrupted)
    trainer.fit(stack, train_dataloaders=SeedBatches([_train_batches(c, data, corrupted) for c in cfgs]),
                val_dataloaders=_eval_batches(cfg, data, members[0].eval_names))
    require(all(len(m.history) == cfg.trainer.max_epochs for m in members), "training stopped before the last epoch")
    stack.unstack()
    device = _device(trainer, seeds=len(cfgs))
    return [(m, count_parameters(m.net), device) for m in members]


# Optimizers whose update is element-wise: one over stacked seeds makes each seed's own updates.
ELEMENTWISE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")


def vectorize_wanted(cfg: DictConfig) -> bool:
    """``trainer.vectorize_seeds``: true, false, or auto = on where it wins (a CUDA GPU; see benchmarks/README.md)."""
    mode = cfg.trainer.vectorize_seeds
    if mode == "auto":
        return cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return bool(mode)


def why_not_vectorized(cfg: DictConfig, data: PreparedDataset) -> str | None:
    """Why the seeds of this config cannot be trained as one vectorized model (None: they can)."""
    from hydra.utils import instantiate
    from torch import nn

    net = instantiate(cfg.model.net, in_channels=data.in_channels, image_size=data.image_size,
                      num_classes=data.num_classes)
    for module in net.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (f"model {cfg.model.name} has dropout, whose masks would come from another random "
                    "stream than when each seed trains alone")
    if any(True for _ in net.buffers()):
        return f"model {cfg.model.name} has buffers (batch-norm statistics), which vmap cannot update per seed"
    if cfg.optimizer._target_ not in ELEMENTWISE_OPTIMIZERS:
        return f"optimizer {cfg.optimizer._target_} is not known to be element-wise ({', '.join(ELEMENTWISE_OPTIMIZERS)})"
    if cfg.trainer.early_stopping.patience:
        return "early stopping would stop each seed at its own epoch"
    if parallel_runs(_current_launcher()) > 1:
        return "a parallel launcher would train the same seeds in two jobs at once"
    return None


def with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """The same run config with another seed (and whatever depends on it, e.g. paths.run_dir)."""
    other = copy.deepcopy(cfg)
    other.seed = seed
    return other


SWEEP_SEEDS_ENV = "OVERFITLAB_SWEEP_SEEDS"


class SweepSeeds(Callback):
    """Hydra callback: tell the jobs of a multirun which seeds the sweep has (for ``vectorize_seeds``).

    A job's config holds only its own seed; the sweep's seed list (``study.seeds`` or a
    command-line ``seed=...``, which wins as in Hydra's sweeper) is passed on in the environment.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = OmegaConf.to_container(config.hydra.sweeper.params, resolve=True) or {}
        overrides = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
        seeds: list = []
        for override in OverridesParser.create().parse_overrides([o for o in overrides if o.startswith("seed=")]):
            if override.is_interval_sweep():  # sampled by an optimizing sweeper: no list to share
                seeds = []
            else:
                seeds = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        os.environ[SWEEP_SEEDS_ENV] = ",".join(str(s) for s in seeds)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        os.environ.pop(SWEEP_SEEDS_ENV, None)


@dataclass
class Run:
    """One run of the current config: its directory and the hash that keys it."""

    cfg: DictConfig
    config_hash: str
    run_dir: Path
    label: str

    @classmethod
    def of(cls, cfg: DictConfig, meta: dict) -> "Run":
        return cls(cfg, sha256_json(run_identity(cfg, meta))[:12], Path(cfg.paths.run_dir),
                   f"{cfg.data_label} {cfg.model.name} seed={cfg.seed}")

    def complete(self) -> bool:
        return is_complete(self.run_dir, self.config_hash)


def seed_group(run: Run, data: PreparedDataset, console) -> list[Run]:
    """The sweep's other seeds of this config still to train, to train along with ``run`` (vectorized).

    Empty when vectorizing is off, outside a multirun, or where it cannot be done (said once, why).
    The later jobs of the sweep then find their runs complete and skip them.
    """
    cfg = run.cfg
    seeds = [int(s) for s in os.environ.get(SWEEP_SEEDS_ENV, "").split(",") if s]
    if not vectorize_wanted(cfg) or len(seeds) < 2 or cfg.seed not in seeds:
        return []
    reason = why_not_vectorized(cfg, data)
    if reason:
        if cfg.seed == seeds[0]:
            console.print(f"[yellow]trainer.vectorize_seeds: {run.label.rsplit(' ', 1)[0]} trained seed by seed: "
                          f"{reason}[/yellow]")
        return []
    others = [Run.of(with_seed(cfg, s), data.meta) for s in seeds if s != cfg.seed]
    require(len({run.run_dir, *(o.run_dir for o in others)}) == len(seeds),
            f"trainer.vectorize_seeds: paths.run_dir={cfg.paths.run_dir!r} is the same for every seed")
    return [o for o in others if not o.complete()]


@exit_on_config_error
def train(cfg: DictConfig) -> dict | None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    validate(cfg)
    data = load_prepared(cfg.paths.prepared)
    n_test = len(data.labels["test"])
    require(cfg.trainer.feature_map_image < n_test,
            f"trainer.feature_map_image={cfg.trainer.feature_map_image} but the test split has {n_test} images")
    run = Run.of(cfg, data.meta)
    if run.complete():
        console.print(f"[dim]= {run.label}: already trained with this config ({run.run_dir}), skipped[/dim]")
        return json.loads((run.run_dir / "done.json").read_text())
    runs = [run] + seed_group(run, data, console)
    original_labels = data.labels["train"]
    corrupted = controls.apply_controls(data.images, data.labels, data.num_classes, **cfg.control)
    commit = git_commit()
    loggers = [_start(r, data.meta, commit) for r in runs]
    start = time.perf_counter()
    try:
        if len(runs) == 1:
            fitted = [fit(cfg, data, on_epoch=loggers[0].log_epoch, corrupted=corrupted)]
        else:
            fitted = fit_seeds([r.cfg for r in runs], data, [lg.log_epoch for lg in loggers], corrupted=corrupted)
    except BaseException:
        for logger in loggers:
            logger.finish([], status="KILLED")
        raise
    wall = (time.perf_counter() - start) / len(runs)  # with vectorized seeds: each seed's share
    summaries = [_finish(r, logger, *result, wall, data, original_labels, corrupted, commit, console)
                 for r, logger, result in zip(runs, loggers, fitted)]
    return summaries[0]


def _start(run: Run, meta: dict, commit: str):
    """A fresh run directory (anything half-written or stale removed) and the run's MLflow child run."""
    from .tracking import RunLogger, dataset_of

    cfg = run.cfg
    shutil.rmtree(run.run_dir, ignore_errors=True)  # half-written or from another config
    run.run_dir.mkdir(parents=True)
    tags = {"dataset": cfg.data_label, "model": cfg.model.name, "seed": str(cfg.seed),
            "git_commit": commit, "data_version": meta["data_version"], "config_hash": run.config_hash,
            "run_key": f"{cfg.data_label}/{cfg.model.name}/seed={cfg.seed}/{run.config_hash}",
            "run_dir": str(run.run_dir), "study": cfg.study.name}
    return RunLogger(cfg, OmegaConf.to_container(cfg, resolve=True), tags, run_name=f"{cfg.model.name} seed={cfg.seed}",
                     dataset=dataset_of(cfg, meta))


def _finish(run: Run, mlflow_run, module, n_params: int, device: str, wall: float, data: PreparedDataset,
            original_labels, corrupted, commit: str, console) -> dict:
    """Write a trained run's files (done.json last) and close its MLflow run."""
    cfg, run_dir = run.cfg, run.run_dir
    table = pd.DataFrame(module.history)
    table.insert(0, "seed", int(cfg.seed))
    table.insert(0, "model", cfg.model.name)
    table.insert(0, "dataset", cfg.data_label)
    columns = ["dataset", "model", "seed", "epoch"] + [c for c in METRIC_ORDER if c in table] \
        + sorted(c for c in table if c.startswith("test_") and "/" in c)  # test_acc/<name> of extra test sets
    atomic_write_text(run_dir / "metrics.csv", table[columns].to_csv(index=False))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    # Final test predictions (label, predicted, confidence) for confusion matrices and the like.
    buffer = io.BytesIO()
    np.save(buffer, torch.cat(module.test_predictions).cpu().numpy())
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
               "config_hash": run.config_hash, "data_version": data.meta["data_version"], "git_commit": commit,
               "class_names": data.meta["class_names"], "n_params": n_params,
               "epochs": len(table), "wall_time_s": round(wall, 3), "device": device, "mlflow_run_id": mlflow_run.run_id,
               "final": {c: float(final[c]) for c in columns[4:]}}
    mlflow_run.client.set_tag(mlflow_run.run_id, "device", device)
    mlflow_run.finish([run_dir / "metrics.csv", run_dir / "config.yaml"],
                      extra_metrics={"n_params": n_params, "wall_time_s": wall})
    atomic_write_json(run_dir / "done.json", summary)  # last: marks the run complete
    console.print(f"[green]✓[/green] {run.label}: test_acc {final['test_acc']:.2%} "
                  f"(train_acc {final['train_acc']:.2%}), {n_params:,} params, {wall:.1f} s on {device}")
    return summary


# params.yaml is read from the working directory (the study), conf/ from the project root.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    # Call the module's own main, not this __main__ copy's: joblib's launcher pickles the task
    # function by value when it lives in __main__ (with its globals: CudnnModule cannot be pickled).
    from overfitlab import train as _train

    preflight(sys.argv[1:])
    _train.main()
