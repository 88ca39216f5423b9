"""Stage train: per-epoch metrics on train/val/test, reproducibility, resume, MLflow, bad input."""

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import compose, run_cli
from overfitlab.train import train
from overfitlab.training.batches import TensorBatches


def run_once(overrides=()):
    return train(compose("train", ["model=mlp_300_100", "trainer.progress_bar=false", *overrides]))


def metrics(project, model="mlp_300_100", seed=0):
    return pd.read_csv(project / "runs" / "fashion_mnist" / model / f"seed={seed}" / "metrics.csv")


def test_run_writes_every_metric_for_every_epoch(prepared, project):
    summary = run_once(["seed=0"])
    table = metrics(project)
    assert list(table.columns) == [
        "dataset",
        "model",
        "seed",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "test_conf_wrong",
        "test_ece",
    ]
    assert table.epoch.tolist() == [1, 2]  # epochs count from 1, one row each
    assert (
        table[["train_acc", "val_acc", "test_acc", "test_conf_wrong", "test_ece"]]
        .apply(lambda c: c.between(0, 1))
        .all()
        .all()
    )
    # The synthetic classes are easy: two epochs must beat chance (10 %) by far on the test set.
    assert table.test_acc.iloc[-1] > 0.5
    assert summary["final"]["test_acc"] == pytest.approx(table.test_acc.iloc[-1])
    assert summary["n_params"] == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    done = json.loads((project / "runs/fashion_mnist/mlp_300_100/seed=0/done.json").read_text())
    assert done["config_hash"] and done["data_version"] and done["git_commit"]


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_seeds_differ(prepared, project):
    run_once(["seed=0"])
    first = metrics(project)
    run_once(["seed=0", "paths.run_dir=runs/again"])
    again = pd.read_csv(project / "runs" / "again" / "metrics.csv")
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    run_once(["seed=1"])
    assert not metrics(project, seed=1)[["train_loss", "test_loss"]].equals(
        first[["train_loss", "test_loss"]]
    )


def test_seed_zero_is_a_real_seed(prepared, project):
    """Seed 0 seeds the net like any other seed (a falsy seed must not mean "unseeded")."""
    from hydra.utils import instantiate

    from overfitlab.data.datasets import load_prepared
    from overfitlab.training.fitting import build_classifier

    data = load_prepared(prepared)
    cfg = compose("train", ["model=mlp_300_100", "seed=0"])
    built = [build_classifier(cfg, data).net.state_dict() for _ in range(2)]
    torch.manual_seed(0)
    reference = instantiate(cfg.model.net, in_channels=1, image_size=28, num_classes=10).state_dict()
    for name, value in reference.items():
        assert torch.equal(built[0][name], value) and torch.equal(built[1][name], value)
    other = build_classifier(compose("train", ["model=mlp_300_100", "seed=1"]), data).net.state_dict()
    assert not all(torch.equal(other[name], value) for name, value in reference.items())


def test_train_eval_pass_is_an_eval_mode_pass_over_the_training_split(prepared, project):
    """train_eval_acc is the final net in eval mode (dropout off) on the training images; the running
    train_acc is not."""
    from overfitlab.data.datasets import load_prepared
    from overfitlab.training.fitting import fit

    data = load_prepared(prepared)
    cfg = compose(
        "train", ["model=model_c", "seed=0", "train.train_eval_pass=true", "trainer.progress_bar=false"]
    )
    module = fit(cfg, data).module
    last = module.history[-1]
    net = module.net.eval()
    with torch.no_grad():
        logits = net(data.images["train"])
        in_train_mode = net.train()(data.images["train"])
    net.eval()
    labels = data.labels["train"]
    assert last["train_eval_acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert last["train_eval_loss"] == pytest.approx(loss, rel=1e-5)
    # Not the validation split, and not a training-mode (dropout on) pass.
    assert last["train_eval_acc"] != pytest.approx(
        (net(data.images["val"]).argmax(1) == data.labels["val"]).float().mean().item()
    )
    assert (in_train_mode.argmax(1) != logits.argmax(1)).any()


@pytest.mark.slow
def test_finished_run_is_skipped_and_half_written_run_is_retrained(prepared, project):
    first = run_once(["seed=0"])
    run_dir = project / "runs/fashion_mnist/mlp_300_100/seed=0"
    mtime = (run_dir / "metrics.csv").stat().st_mtime_ns
    assert run_once(["seed=0"])["mlflow_run_id"] == first["mlflow_run_id"]  # skipped
    assert (run_dir / "metrics.csv").stat().st_mtime_ns == mtime
    (run_dir / "done.json").unlink()  # as if killed before the end
    (run_dir / "metrics.csv").write_text("garbage")
    again = run_once(["seed=0"])
    assert again["mlflow_run_id"] != first["mlflow_run_id"]
    assert metrics(project).epoch.tolist() == [1, 2]
    changed = run_once(["seed=0", "train.epochs=3"])  # another config: trained again
    assert changed["config_hash"] != again["config_hash"] and metrics(project).epoch.tolist() == [1, 2, 3]


@pytest.mark.slow
def test_mlflow_gets_params_tags_and_per_epoch_metrics(prepared, project):
    from mlflow.tracking import MlflowClient

    summary = run_once(["seed=0"])
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "mlp_300_100" and run.data.tags["seed"] == "0"
    assert run.data.tags["data_version"] == summary["data_version"]
    assert (
        run.data.params["train.epochs"] == "2" and run.data.params["optimizer._target_"] == "torch.optim.Adam"
    )
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(summary["final"]["test_acc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.csv", "config.yaml"} <= artifacts


@pytest.mark.slow
def test_multirun_sweeps_seeds_under_one_parent_mlflow_run(prepared, project):
    from mlflow.tracking import MlflowClient

    result = run_cli(
        sys.executable, "-m", "overfitlab.train", "-m", "model=model_a", "trainer.progress_bar=false"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("✓ fashion_mnist model_a") == 2  # one line per finished run
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("overfitlab.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["seed"] for r in children) == ["0", "1"]


def test_training_batches_are_whole_slices_in_a_seeded_order():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    a = [b[1].tolist() for b in TensorBatches(x, y, 4, shuffle=True, seed=3)]
    b = [b[1].tolist() for b in TensorBatches(x, y, 4, shuffle=True, seed=3)]
    assert a == b and [len(v) for v in a] == [4, 4, 2] and sorted(sum(a, [])) == list(range(10))
    loader = TensorBatches(x, y, 4, shuffle=True, seed=3)
    assert [v.tolist() for _, v in loader] != [v.tolist() for _, v in loader]  # reshuffled each epoch
    assert [v.tolist() for _, v in TensorBatches(x, y, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,key",
    [
        ("train.epochs=-1", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.lr=-0.1", "train.lr"),
    ],
)
def test_bad_training_values_fail_with_one_line(prepared, project, override, key):
    result = run_cli(sys.executable, "-m", "overfitlab.train", "model=model_a", override)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and key in lines[-1]
    assert not (project / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["model=resnet9000"], ["-m", "model=model_a,resnet9000"]])
def test_unknown_model_is_one_line_listing_allowed_names(prepared, project, args):
    result = run_cli(sys.executable, "-m", "overfitlab.train", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "model='resnet9000'" in result.stderr and "deep_network" in result.stderr
    assert not (project / "runs").exists()


@pytest.mark.slow
def test_zero_seeds_is_an_error_naming_the_key(prepared, project):
    from conftest import set_params

    set_params(project, study={"seeds": []})
    result = run_cli(sys.executable, "-m", "overfitlab.train", "-m", "model=model_a")
    assert result.returncode == 2 and "study.seeds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    set_params(project, study={"seeds": [0]})
    result = run_cli(sys.executable, "-m", "overfitlab.train", "-m", "model=model_a", "study.seeds=[]")
    assert (
        result.returncode == 2
        and result.stderr.strip()
        == "error: study.seeds is empty (params.yaml); list at least one value, e.g. study.seeds: [0, 1, 2]"
    )
    assert not (project / "runs").exists()


@pytest.mark.slow
def test_training_without_prepared_data_says_what_to_run(project):
    result = run_cli(sys.executable, "-m", "overfitlab.train", "model=model_a")
    assert result.returncode == 2 and "prepare" in result.stderr.strip().splitlines()[-1]


def test_early_stopping_watches_only_the_validation_metric():
    from types import SimpleNamespace

    from overfitlab.training.module import StopWhenValidationStalls

    module = SimpleNamespace(trainer=SimpleNamespace(should_stop=False))
    stop = StopWhenValidationStalls(module, "val_acc", patience=2, mode="max")
    for epoch, (val, test) in enumerate([(0.5, 0.5), (0.6, 0.4), (0.6, 0.9), (0.55, 0.95)], start=1):
        stop({"epoch": epoch, "val_acc": val, "test_acc": test})
        # A better test accuracy never resets the count; an equal val_acc is no improvement.
        assert module.trainer.should_stop == (epoch == 4)


@pytest.mark.slow
def test_hyperparameter_search_scores_trials_on_validation_and_writes_the_best(prepared, project):
    import yaml
    from mlflow.tracking import MlflowClient

    result = run_cli(
        sys.executable,
        "-m",
        "overfitlab.search",
        "--multirun",
        "hydra.sweeper.n_trials=3",
        "search.max_epochs=4",
        "search.patience=1",
        "trainer.progress_bar=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best_file = yaml.safe_load((project / "reports/search/best.yaml").read_text())
    trials = best_file["trials"]
    assert len(trials) == 3 and best_file["best"] == trials[0]
    for trial in trials:  # each score is that run's best validation accuracy, not a test number
        history = pd.read_csv(Path(trial["run_dir"]) / "metrics.csv")
        assert trial["score"] == pytest.approx(history.val_acc.max())
        assert 1 <= len(history) <= 4
    assert trials[0]["score"] == max(t["score"] for t in trials)
    assert "search: best val_acc" in result.stderr
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-study-search")
    children = [
        r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]
    assert len(children) == 3


@pytest.mark.parametrize("tf32", [True, False])
def test_trainer_keeps_deterministic_algorithms_and_applies_allow_tf32(project, tf32, monkeypatch):
    """Deterministic kernels stay on (same seed, same numbers) without NaN-filling every new tensor
    (a kernel per allocation on a GPU); trainer.allow_tf32 reaches both cuDNN and cuBLAS; Lightning's
    NVML-based CUDA check (a slow ``torch.cuda.is_available()`` inside every optimizer step) is off."""
    from overfitlab.training.fitting import make_trainer as _trainer
    from overfitlab.training.fitting import setup_torch as _setup_torch

    cfg = compose("train", [f"trainer.allow_tf32={tf32}", "trainer.progress_bar=false"])
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not tf32
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what importing Lightning does
    # The flag is process-global: start from off, so an earlier test cannot make this one pass.
    torch.use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()
    _setup_torch(cfg)
    _trainer(cfg, [])
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.slow
def test_bad_allow_tf32_value_is_one_line_naming_the_key(prepared, project):
    result = run_cli(
        sys.executable, "-m", "overfitlab.train", "model=model_a", "trainer.allow_tf32=sometimes"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: trainer.allow_tf32='sometimes'; allowed: true, false"
    )
    assert not (project / "runs").exists()
