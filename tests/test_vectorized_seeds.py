"""Vectorized seeds (``trainer.vectorize_seeds``): N seeds trained at once as one model train each
seed as if it were alone, and write what sequential runs write.

The sequential side is the real ``fit`` (already checked against a plain loop in
test_training_path.py); the vectorized side is the real ``fit_seeds`` / multirun.
"""

import json
import sys

import lightning as L
import pandas as pd
import pytest
import torch

from conftest import compose, run_cli
from overfitlab.data.datasets import load_prepared
from overfitlab.training.fitting import fit, fit_seeds, why_not_vectorized
from test_training_path import FirstStep, first_loss

SEEDS = [0, 1, 2]


class StackFirstStep(L.Callback):
    """Records each seed's initial weights and first minibatch in the vectorized path."""

    def on_train_batch_start(self, trainer, stack, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            bs = stack.batch_size
            self.weights = [
                {n: p[i].detach().clone() for n, p in zip(stack.names, stack.stacked)}
                for i in range(len(stack.members))
            ]
            self.x, self.y = batch[0][:, :bs].clone(), batch[1][:, :bs].clone()


# model D without its dropout: a small ConvNet (conv, pool, dense)
@pytest.mark.parametrize(
    "model",
    [
        pytest.param(["model=deep_network"], marks=pytest.mark.slow),
        ["model=mlp_300_100"],
        pytest.param(["model=model_d", "model.net.dropout=0"], marks=pytest.mark.slow),
    ],
)
def test_vectorized_seeds_train_each_seed_as_if_alone(prepared, model):
    cfgs = [
        compose(
            "train",
            [*model, f"seed={s}", "train.epochs=2", "trainer.progress_bar=false", "trainer.threads=1"],
        )
        for s in SEEDS
    ]
    data = load_prepared(prepared)
    stack_first = StackFirstStep()
    together = fit_seeds(cfgs, data, [None] * len(SEEDS), extra_callbacks=[stack_first])
    # benchmarks/gpu.sh runs this test on a GPU too, which the trainer's accelerator "auto" picks there
    n = len(SEEDS)
    assert together[0][2] == (
        f"cuda:0 ({n} seeds vectorized)"
        if torch.cuda.is_available()
        else f"cpu (1 threads, {n} seeds vectorized)"
    )
    for i, cfg in enumerate(cfgs):
        first = FirstStep()
        alone, n_params, _ = fit(cfg, data, extra_callbacks=[first])
        # Same initialization and the same first minibatch as the seed trained alone ...
        for name, value in first.weights.items():
            assert torch.equal(stack_first.weights[i][name], value), (cfg.seed, name)
        assert torch.equal(stack_first.x[i], first.x) and torch.equal(stack_first.y[i], first.y)
        assert first_loss(
            alone.net, stack_first.weights[i], stack_first.x[i], stack_first.y[i]
        ) == pytest.approx(first_loss(alone.net, first.weights, first.x, first.y), abs=1e-5)
        # ... and the same updates: after two epochs (14 Adam steps) the same weights and curves,
        # up to the order of float sums.
        module, together_params, _ = together[i]
        assert together_params == n_params
        trained, alone_trained = module.net.state_dict(), alone.net.state_dict()
        # A vmapped (grouped) convolution sums in another order than one seed's, on a GPU (cuDNN) and on
        # a CPU alike, and Adam's normalized steps carry such differences on: after 14 steps on the
        # 2-core CPU up to 3e-4 in a first-layer weight that moved 0.014 (seed 2 of the deep network; an
        # absolute 1e-4 bound failed there), ~1e-4 per weight on an H200. So: the whole net's deviation
        # is small next to how far training moved it, which a wrong start or data order would not be.
        deviation = torch.cat([(trained[n] - v).flatten() for n, v in alone_trained.items()]).norm()
        moved = torch.cat(
            [(v - first.weights[n].to(v.device)).flatten() for n, v in alone_trained.items()]
        ).norm()
        assert deviation <= 0.02 * moved, (cfg.seed, float(deviation / moved))
        a, b = pd.DataFrame(module.history), pd.DataFrame(alone.history)
        assert list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(
            a.filter(like="loss"),
            b.filter(like="loss"),
            check_exact=False,
            atol=1e-4,
            rtol=1e-3 if torch.cuda.is_available() else 1e-5,
        )
        assert (a.filter(like="acc") - b.filter(like="acc")).abs().max().max() <= 0.01
        # The per-example record: each seed's own examples in its own order, as when alone.
        together_record, alone_record = torch.stack(module.example_record), torch.stack(alone.example_record)
        assert together_record.shape == alone_record.shape == (2, len(data.labels["train"]))
        assert (together_record != alone_record).float().mean() <= 0.01
        assert (
            torch.allclose(torch.cat(module.test_predictions), torch.cat(alone.test_predictions), atol=1e-3)
            or (torch.cat(module.test_predictions)[:, 1] != torch.cat(alone.test_predictions)[:, 1]).sum()
            <= 2
        )
    # The seeds are really different runs.
    weights = [next(iter(module.net.state_dict().values())) for module, _, _ in together]
    assert not torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(
    "overrides,reason",
    [
        (["model=deep_network"], None),
        (["model=mlp_300_100"], None),
        (["model=model_c"], "dropout"),  # model C has dropout: masks would come from another random stream
        (["model=alexnet", "model.net.dense_width=16"], "dropout"),
        (["model=alexnet", "model.net.dense_width=16", "model.net.dropout=0"], "batch-norm"),
        (["model=mlp_300_100", "train.optimizer=sgd", "optimizer=sgd"], None),
        (["model=mlp_300_100", "trainer.early_stopping.patience=2"], "early stopping"),
    ],
)
def test_architectures_that_cannot_be_vectorized_say_why(prepared, overrides, reason):
    why = why_not_vectorized(compose("train", overrides), load_prepared(prepared))
    assert why == reason if reason is None else reason in why


def run_files(project):
    return {p.relative_to(project / "runs").as_posix() for p in (project / "runs").rglob("*") if p.is_file()}


RUNS = "runs/fashion_mnist/model_d/dropout=0"  # the command line's model.net.dropout=0 is an axis of it


@pytest.mark.slow
def test_multirun_trains_the_seeds_together_with_the_outputs_of_sequential_runs(prepared, project):
    from mlflow.tracking import MlflowClient

    args = [
        sys.executable,
        "-m",
        "overfitlab.train",
        "-m",
        "model=model_d",
        "model.net.dropout=0",
        "trainer.progress_bar=false",
    ]
    sequential = run_cli(*args, "trainer.vectorize_seeds=false")
    assert sequential.returncode == 0, sequential.stderr[-2000:]
    files = run_files(project)
    done = {s: json.loads((project / f"{RUNS}/seed={s}/done.json").read_text()) for s in (0, 1)}
    tables = {s: pd.read_csv(project / f"{RUNS}/seed={s}/metrics.csv") for s in (0, 1)}
    (project / "runs").rename(project / "runs_sequential")

    together = run_cli(*args, "trainer.vectorize_seeds=true")
    assert together.returncode == 0, together.stderr[-2000:]
    assert together.stderr.count("✓ fashion_mnist model_d") == 2  # both seeds finished in the first job ...
    # ... the second job skips
    assert "= fashion_mnist model_d dropout=0 seed=1: already trained" in together.stderr
    assert run_files(project) == files  # the same files: metrics, config, predictions, feature maps, done
    for s in (0, 1):
        run_dir = project / f"{RUNS}/seed={s}"
        summary = json.loads((run_dir / "done.json").read_text())
        assert summary["config_hash"] == done[s]["config_hash"]  # the same run identity, so collect keeps it
        assert summary["device"].endswith("2 seeds vectorized)") and "vectorized" not in done[s]["device"]
        assert summary.keys() == done[s].keys()
        table = pd.read_csv(run_dir / "metrics.csv")
        assert list(table.columns) == list(tables[s].columns) and table.epoch.tolist() == [1, 2]
        pd.testing.assert_frame_equal(
            table.filter(like="loss"), tables[s].filter(like="loss"), check_exact=False, atol=1e-3
        )
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-study")
    parents = sorted(
        (
            r
            for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("overfitlab.kind") == "sweep"
        ),
        key=lambda r: r.info.start_time,
    )
    children = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id
    ]
    assert sorted(r.data.tags["seed"] for r in children) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "vectorized" in r.data.tags["device"] for r in children)
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "test_acc")] == [1, 2]


@pytest.mark.slow
def test_a_command_line_seed_sweep_is_the_group(prepared, project):
    """`-m seed=1,3` trains seeds 1 and 3 together, not the study's seeds."""
    result = run_cli(
        sys.executable,
        "-m",
        "overfitlab.train",
        "-m",
        "model=model_a",
        "seed=1,3",
        "trainer.vectorize_seeds=true",
        "trainer.progress_bar=false",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (project / "runs/fashion_mnist/model_a").iterdir()) == ["seed=1", "seed=3"]
    assert "= fashion_mnist model_a seed=3: already trained" in result.stderr


@pytest.mark.slow
def test_a_model_that_cannot_be_vectorized_is_trained_seed_by_seed_and_says_why(prepared, project):
    result = run_cli(
        sys.executable,
        "-m",
        "overfitlab.train",
        "-m",
        "model=model_c",
        "trainer.vectorize_seeds=true",
        "trainer.progress_bar=false",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("trained seed by seed: model model_c has dropout") == 1
    assert result.stderr.count("✓ fashion_mnist model_c") == 2 and "already trained" not in result.stderr


@pytest.mark.slow
def test_bad_vectorize_value_is_one_line_naming_the_key(prepared, project):
    result = run_cli(
        sys.executable, "-m", "overfitlab.train", "model=model_a", "trainer.vectorize_seeds=sometimes"
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        "error: trainer.vectorize_seeds"
    )


def test_vectorized_seeds_split_the_training_accuracy_by_corrupted_labels_as_alone(prepared):
    """The randomization control's clean/corrupted training accuracy, summed for all seeds at once."""
    cfgs = [
        compose(
            "train",
            [
                "model=mlp_300_100",
                f"seed={s}",
                "train.epochs=2",
                "trainer.progress_bar=false",
                "trainer.threads=1",
            ],
        )
        for s in SEEDS[:2]
    ]
    data = load_prepared(prepared)
    corrupted = torch.zeros(len(data.labels["train"]), dtype=torch.bool)
    corrupted[::3] = True  # which examples count as corrupted; the split must follow it
    together = fit_seeds(cfgs, data, [None, None], corrupted=corrupted)
    for (module, _, _), cfg in zip(together, cfgs):
        alone, _, _ = fit(cfg, data, corrupted=corrupted)
        a, b = pd.DataFrame(module.history), pd.DataFrame(alone.history)
        assert list(a.columns) == list(b.columns) and {"train_clean_acc", "train_corrupted_acc"} <= set(
            a.columns
        )
        assert (a.filter(like="train_c") - b.filter(like="train_c")).abs().max().max() <= 0.01
        n_corrupted = int(corrupted.sum())  # the two subsets make up the whole running accuracy
        whole = (
            a.train_clean_acc * (len(corrupted) - n_corrupted) + a.train_corrupted_acc * n_corrupted
        ) / len(corrupted)
        assert ((whole - a.train_acc).abs() < 1e-9).all()
