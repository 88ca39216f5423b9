"""Fitting: torch and Lightning set up inside the job, then one run or a seed group trained.

Everything here is built inside the process that trains (a joblib worker, a SLURM job): nothing
torch- or backend-specific is created before a job starts, so jobs pickle and start cleanly.
``fit`` trains one seed; ``fit_seeds`` trains several seeds of one config at once as one
vectorized model (``module.SeedStack``), each seed seeded, built and fed as when alone.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import NamedTuple

import torch
from omegaconf import DictConfig

from ..data.datasets import PreparedDataset
from ..errors import require
from .batches import SeedBatches, TensorBatches
from .models.layers import count_parameters, initialize

# Optimizers whose update is element-wise: one over stacked seeds makes each seed's own updates.
ELEMENTWISE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")


class Fitted(NamedTuple):
    """A trained run: its module (history, predictions, net), parameter count and where it trained."""

    module: object
    n_params: int
    device: str


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        "does not have many workers",
        "number of training batches",
        "is not a `DataLoader`",
        "LitLogger",
        "treespec",
    ):
        warnings.filterwarnings("ignore", message=f".*{message}.*")


def setup_torch(cfg: DictConfig, threads: int | None = None) -> None:
    import lightning  # noqa: F401  (imported here first: it sets the variable dropped below)

    _quiet_lightning()
    # Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that forked DataLoader workers
    # find CUDA uninitialized). With it every torch.cuda.is_available() queries NVML again (~40 us
    # instead of ~1 us on the CPU machine), and torch's optimizers ask on every step: +150 us per
    # Adam step, ~12 % of a small model's step (benchmarks/README.md). Runs here never fork a
    # process that uses CUDA (batches are sliced in-process; the joblib launcher starts fresh ones).
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on a GPU
    threads = threads or cfg.trainer.threads  # speed only: the caller shares the cores out (launching.py)
    if threads:  # None: torch's default
        torch.set_num_threads(int(threads))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(cfg.trainer.allow_tf32)


def build_net(cfg: DictConfig, data: PreparedDataset):
    """The run's net: its family sized by the data, with ``model.dropout`` (the study axis: dropout
    after each dense hidden layer) in place of the family's own when it is set."""
    from hydra.utils import instantiate

    dropout = cfg.model.get("dropout")
    return instantiate(
        cfg.model.net,
        in_channels=data.in_channels,
        image_size=data.image_size,
        num_classes=data.num_classes,
        **({} if dropout is None else {"dropout": float(dropout)}),
    )


def build_parts(cfg: DictConfig) -> list:
    """The optional parts of training that are on (``trainer.parts``: training/parts/)."""
    from hydra.utils import instantiate

    parts = [instantiate(node, seed=int(cfg.seed)) for node in (cfg.trainer.get("parts") or {}).values()]
    return [part for part in parts if part.active]


def build_classifier(cfg: DictConfig, data: PreparedDataset, on_epoch=None):
    """Seed and build the net exactly as a run of ``cfg.seed`` does; wrap it with its metrics."""
    import lightning as L
    from hydra.utils import instantiate

    from .module import Classifier, StopWhenValidationStalls

    L.seed_everything(int(cfg.seed), workers=False, verbose=False)
    net = build_net(cfg, data)
    initialize(net, cfg.model.get("init"))
    extra_tests = [s for s in data.images if s.startswith("test@")]  # named extra test sets
    validation = ["val"] if len(data.labels["val"]) else []  # prepare.val_size: 0 = no validation split
    eval_names = validation + ["test"] + extra_tests + (["train_eval"] if cfg.trainer.train_eval_pass else [])
    module = Classifier(
        net,
        instantiate(cfg.optimizer),
        eval_names,
        batch_size=cfg.trainer.batch_size,
        n_train=len(data.labels["train"]),
        loss=cfg.trainer.loss,
        parts=build_parts(cfg),
    )
    if on_epoch is not None:
        module.epoch_listeners.append(on_epoch)
    stopping = cfg.trainer.early_stopping
    if stopping.patience:
        module.epoch_listeners.append(
            StopWhenValidationStalls(module, stopping.monitor, stopping.patience, stopping.mode)
        )
    return module


def eval_batches(cfg: DictConfig, data: PreparedDataset, eval_names: list[str]) -> list[TensorBatches]:
    splits = {"val": "val", "test": "test", "train_eval": "train"}
    return [
        TensorBatches(
            data.images[splits.get(n, n)], data.labels[splits.get(n, n)], cfg.trainer.eval_batch_size
        )
        for n in eval_names
    ]


def train_batches(cfg: DictConfig, data: PreparedDataset, corrupted) -> TensorBatches:
    # Chunks of consecutive minibatches; the module splits them back (see module.py).
    chunk = cfg.trainer.batch_size * max(1, cfg.trainer.examples_per_step // cfg.trainer.batch_size)
    return TensorBatches(
        data.images["train"],
        data.labels["train"],
        chunk,
        shuffle=True,
        seed=int(cfg.seed),
        flags=corrupted if corrupted is not None and corrupted.any() else None,
        index=True,  # the per-example record (module.py)
    )


def make_trainer(cfg: DictConfig, extra_callbacks=()):
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar

    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision="32-true",  # what the bare optimizer steps in module.py assume
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
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


def device_name(trainer, seeds: int = 1) -> str:
    """Where it trained; on a CPU the thread count (it changes float summation order: the last digits)."""
    cpu = trainer.strategy.root_device.type == "cpu"
    notes = ([f"{torch.get_num_threads()} threads"] if cpu else []) + (
        [f"{seeds} seeds vectorized"] if seeds > 1 else []
    )
    device = str(trainer.strategy.root_device)
    return f"{device} ({', '.join(notes)})" if notes else device


def _stopped_early(cfg: DictConfig, module) -> bool:
    return len(module.history) < cfg.trainer.max_epochs and not module.diverged


def fit(
    cfg: DictConfig,
    data: PreparedDataset,
    on_epoch=None,
    extra_callbacks=(),
    corrupted=None,
    threads: int = 1,
) -> Fitted:
    """Seed, build and train one model.

    ``corrupted`` (one bool per training example) splits the running training accuracy into
    ``train_clean_acc`` and ``train_corrupted_acc``.
    """
    setup_torch(cfg, threads)
    module = build_classifier(cfg, data, on_epoch)
    trainer = make_trainer(cfg, extra_callbacks)
    data, corrupted = _on_device(trainer, data, corrupted)
    trainer.fit(
        module,
        train_dataloaders=train_batches(cfg, data, corrupted),
        val_dataloaders=eval_batches(cfg, data, module.eval_names),
    )
    require(
        not _stopped_early(cfg, module) or cfg.trainer.early_stopping.patience,
        "training stopped before the last epoch",
    )
    return Fitted(module, count_parameters(module.net), device_name(trainer))


def fit_seeds(
    cfgs: list[DictConfig],
    data: PreparedDataset,
    on_epochs: list,
    extra_callbacks=(),
    corrupted=None,
    threads: int | None = None,
) -> list[Fitted]:
    """Train the runs ``cfgs`` (one config, several seeds) at once as one vectorized model.

    Each seed's net is seeded and built, and its data ordered, exactly as ``fit`` does for that
    seed alone (see ``module.SeedStack``).
    """
    from hydra.utils import instantiate

    from .module import SeedStack

    cfg = cfgs[0]
    setup_torch(cfg, threads)
    members = [build_classifier(c, data, on_epoch) for c, on_epoch in zip(cfgs, on_epochs)]
    stack = SeedStack(members, instantiate(cfg.optimizer), batch_size=cfg.trainer.batch_size)
    trainer = make_trainer(cfg, extra_callbacks)
    data, corrupted = _on_device(trainer, data, corrupted)
    trainer.fit(
        stack,
        train_dataloaders=SeedBatches([train_batches(c, data, corrupted) for c in cfgs]),
        val_dataloaders=eval_batches(cfg, data, members[0].eval_names),
    )
    require(not any(_stopped_early(cfg, m) for m in members), "training stopped before the last epoch")
    stack.unstack()
    device = device_name(trainer, seeds=len(cfgs))
    return [Fitted(m, count_parameters(m.net), device) for m in members]


def vectorize_wanted(cfg: DictConfig) -> bool:
    """``trainer.vectorize_seeds``: true, false, or auto = on where it wins (a CUDA GPU; benchmarks/)."""
    mode = cfg.trainer.vectorize_seeds
    if mode == "auto":
        return cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return bool(mode)


def why_not_vectorized(cfg: DictConfig, data: PreparedDataset) -> str | None:
    """Why the seeds of this config cannot be trained as one vectorized model (None: they can)."""
    from torch import nn

    net = build_net(cfg, data)
    for module in net.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (
                f"model {cfg.model.name} has dropout, whose masks would come from another random "
                "stream than when each seed trains alone"
            )
    if any(True for _ in net.buffers()):
        return (
            f"model {cfg.model.name} has buffers (batch-norm statistics), which vmap cannot update per seed"
        )
    if cfg.optimizer._target_ not in ELEMENTWISE_OPTIMIZERS:
        return (
            f"optimizer {cfg.optimizer._target_} is not known to be element-wise "
            f"({', '.join(ELEMENTWISE_OPTIMIZERS)})"
        )
    if cfg.trainer.early_stopping.patience:
        return "early stopping would stop each seed at its own epoch"
    if build_parts(cfg):
        return "optional parts of training (weight decay, augmentation, label smoothing) train seed by seed"
    return None
