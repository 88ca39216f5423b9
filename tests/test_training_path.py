"""The project's training path does exactly what a plain PyTorch loop does for the same seed.

The plain loop here is written from scratch (its own permutation, its own optimizer steps); the
project path is the real one (``overfitlab.train.fit``: Lightning, TensorBatches, on-device sums).
"""

import os

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from overfitlab.data import load_prepared
from overfitlab.train import fit, threads_per_run


class FirstLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def plain_epoch(cfg, data, seed):
    """Seed, build, and train one epoch by hand; returns per-batch losses and the epoch's mean loss."""
    torch.manual_seed(seed)
    net = instantiate(cfg.model.net, in_channels=data.in_channels, image_size=data.image_size,
                      num_classes=data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    x, y = data.images["train"], data.labels["train"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    losses, total = [], 0.0
    for start in range(0, len(y), cfg.trainer.batch_size):
        idx = order[start:start + cfg.trainer.batch_size]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        total += loss.item() * len(idx)
    return losses, total / len(y)


@pytest.mark.parametrize("model", ["mlp_300_100", "model_d"])
def test_project_path_matches_a_plain_loop_step_by_step(prepared, model):
    cfg = compose("train", [f"model={model}", "seed=3", "train.epochs=1", "trainer.progress_bar=false"])
    data = load_prepared(prepared)
    recorder = FirstLosses()
    module, _, _ = fit(cfg, data, extra_callbacks=[recorder])
    plain_losses, plain_mean = plain_epoch(cfg, data, seed=3)
    assert recorder.losses[0] == pytest.approx(plain_losses[0], abs=1e-5)  # same init, same first batch
    assert recorder.losses == pytest.approx(plain_losses, abs=1e-4)  # same batches, same updates
    assert module.history[0]["train_loss"] == pytest.approx(plain_mean, abs=1e-5)


@pytest.mark.parametrize("overrides,parallel", [
    ([], 1),  # the default sequential launcher: one run at a time
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"], 1),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], None),  # one run per core
])
def test_threads_per_run_never_oversubscribes_the_cores(project, overrides, parallel):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    cores = len(os.sched_getaffinity(0))
    with initialize_config_dir(version_base="1.3", config_dir=str(project / "conf")):
        cfg = hydra_compose("train", overrides, return_hydra_config=True)
    threads = threads_per_run(cfg.hydra.launcher)
    assert threads == max(1, cores // (parallel or cores))
    assert threads * (parallel or cores) <= max(cores, parallel or cores)
