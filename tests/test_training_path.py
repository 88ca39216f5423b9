"""The project's training path does exactly what a plain PyTorch loop does for the same seed.

The plain loop here is written from scratch (its own permutation, its own optimizer steps); the
project path is the real one (``overfitlab.training.fitting.fit``: Lightning, TensorBatches, on-device sums).
"""

import copy
import os

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from overfitlab.data.datasets import load_prepared
from overfitlab.launching import threads_per_run
from overfitlab.training.fitting import fit


class FirstStep(L.Callback):
    """Records the initial weights and the first minibatch the project path trains on."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            self.weights = copy.deepcopy(module.net.state_dict())
            bs = module.batch_size
            self.x, self.y = batch[0][:bs].clone(), batch[1][:bs].clone()


def plain_epoch(cfg, data, seed):
    """Seed, build and train one epoch by hand.

    Returns the initial weights, the first minibatch, the trained net and the epoch's mean loss.
    """
    torch.manual_seed(seed)
    net = instantiate(
        cfg.model.net, in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes
    )
    init = copy.deepcopy(net.state_dict())
    opt = instantiate(cfg.optimizer)(net.parameters())  # the study's optimizer (Adam, fused), built by hand
    x, y = data.images["train"], data.labels["train"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    first, total = None, 0.0
    for start in range(0, len(y), cfg.trainer.batch_size):
        idx = order[start : start + cfg.trainer.batch_size]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        first = first or (x[idx].clone(), y[idx].clone())
        total += loss.item() * len(idx)
    return init, first, net, total / len(y)


@pytest.mark.parametrize("model,chunk", [("mlp_300_100", 512), ("model_d", 96), ("model_c", 1)])
def test_project_path_matches_a_plain_loop_step_by_step(prepared, model, chunk):
    cfg = compose(
        "train",
        [
            f"model={model}",
            "seed=3",
            "train.epochs=1",
            "trainer.progress_bar=false",
            f"trainer.examples_per_step={chunk}",
        ],
    )
    data = load_prepared(prepared)
    first = FirstStep()
    module, _, _ = fit(cfg, data, extra_callbacks=[first])
    plain_init, plain_first, plain_net, plain_mean = plain_epoch(cfg, data, seed=3)
    # Same initial weights and the same first minibatch, hence the same first loss (eval mode, so
    # that dropout does not enter the comparison; the weights check below covers dropout's draws).
    for name, value in plain_init.items():
        assert torch.equal(first.weights[name], value), name
    plain_x, plain_y = plain_first
    assert torch.equal(first.x, plain_x) and torch.equal(first.y, plain_y)
    assert first_loss(module.net, first.weights, first.x, first.y) == pytest.approx(
        first_loss(module.net, plain_init, plain_x, plain_y), abs=1e-5
    )
    # Same minibatches in the same order with the same updates: same weights after the epoch.
    for name, value in plain_net.state_dict().items():
        assert torch.allclose(module.net.state_dict()[name], value, atol=1e-5), name
    assert module.history[0]["train_loss"] == pytest.approx(plain_mean, abs=1e-5)


def first_loss(net, weights, x, y) -> float:
    clone = copy.deepcopy(net).to(x.device)  # the trained net is back on the CPU, x may be on a GPU
    clone.load_state_dict(weights)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(clone.eval()(x), y))


@pytest.mark.parametrize(
    "overrides,parallel",
    [
        ([], 1),  # the default sequential launcher: one run at a time
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"], 1),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], None),  # one run per core
    ],
)
def test_threads_per_run_never_oversubscribes_the_cores(project, overrides, parallel):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    cores = len(os.sched_getaffinity(0))
    with initialize_config_dir(version_base="1.3", config_dir=str(project / "conf")):
        cfg = hydra_compose("train", overrides, return_hydra_config=True)
    threads = threads_per_run(cfg.hydra.launcher)
    assert threads == max(1, cores // (parallel or cores))
    assert threads * (parallel or cores) <= max(cores, parallel or cores)
