"""The per-example record (which training examples each epoch's steps got right) and the losses."""

import pandas as pd
import pytest
import torch

from conftest import compose
from overfitlab import runs
from overfitlab.train import train
from overfitlab.training.losses import per_example_loss

RUN = "runs/fashion_mnist/mlp_300_100/seed=0"


def test_record_is_the_running_training_accuracy_per_example(prepared, project):
    """Each epoch's record averages to that epoch's train_acc exactly (the same predictions), names
    each example's manifest row, and the final eval-mode predictions give train_eval_acc."""
    train(compose("train", ["model=mlp_300_100", "trainer.progress_bar=false", "train.train_eval_pass=true"]))
    record = runs.read_train_examples(project / RUN)
    table = pd.read_csv(project / RUN / runs.METRICS)
    manifest = pd.read_csv(prepared / "manifest.csv")
    train_rows = manifest[manifest.split == "train"]
    assert record["correct"].shape == (len(table), len(train_rows))
    assert record["correct"].mean(1).tolist() == pytest.approx(table.train_acc.tolist(), abs=1e-12)
    assert record["example"].tolist() == train_rows.example.tolist()
    assert record["label"].tolist() == train_rows.label.tolist()
    final_eval_acc = (record["final_predicted"] == record["label"]).mean()
    assert final_eval_acc == pytest.approx(table.train_eval_acc.iloc[-1], abs=1e-12)
    # bit-packed: an epoch costs an eighth of a byte per example, not a byte
    packed = (project / RUN / runs.TRAIN_EXAMPLES).stat().st_size
    assert packed < len(train_rows) * (len(table) / 8 + 2 + 8 + 2) + 2000


def test_record_splits_kept_and_changed_labels_as_the_control_does(prepared, project):
    """With label noise the record holds the labels trained on; averaged over the changed-label
    examples it is train_corrupted_acc."""
    train(
        compose(
            "train",
            ["model=mlp_300_100", "trainer.progress_bar=false", "train.label_noise=0.5", "train.epochs=3"],
        )
    )
    run = project / RUN  # composed in-process: no command-line axes
    record = runs.read_train_examples(run)
    labels = pd.read_csv(run / runs.TRAIN_LABELS)
    changed = labels.corrupted.to_numpy()
    assert changed.any() and record["label"].tolist() == labels.label.tolist()
    table = pd.read_csv(run / runs.METRICS)
    assert record["correct"][:, changed].mean(1).tolist() == pytest.approx(
        table.train_corrupted_acc.tolist(), abs=1e-12
    )


def test_squared_error_trains_and_evaluates_on_the_same_loss(prepared, project):
    from overfitlab.data.datasets import load_prepared
    from overfitlab.training.fitting import fit

    data = load_prepared(prepared)
    cfg = compose(
        "train",
        ["model=mlp_300_100", "train.loss=squared_error", "trainer.progress_bar=false", "train.epochs=3"],
    )
    module = fit(cfg, data).module
    with torch.no_grad():
        logits = module.net.eval()(data.images["val"])
    labels = data.labels["val"]
    squared = per_example_loss(logits, labels, "squared_error").mean().item()
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    assert squared == pytest.approx(((logits - one_hot) ** 2).sum(1).mean().item(), rel=1e-6)
    assert module.history[-1]["val_loss"] == pytest.approx(squared, rel=1e-5)
    assert module.history[-1]["val_loss"] != pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-2
    )
    assert module.history[-1]["test_acc"] > 0.5  # it learns the easy synthetic classes


def test_unknown_loss_is_one_line_naming_the_key(prepared, project):
    import sys

    from conftest import run_cli

    result = run_cli(sys.executable, "-m", "overfitlab.train", "model=mlp_300_100", "train.loss=hinge")
    assert result.returncode != 0
    assert "train.loss" in result.stderr and "squared_error" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_validation_split_trains_without_val_metrics(project):
    """prepare.val_size: 0, as the source studies trained on every training image: no val_* columns."""
    import sys

    from conftest import run_cli, set_params

    set_params(project, prepare={"val_size": 0})
    prepared = run_cli(sys.executable, "-m", "overfitlab.prepare")
    assert prepared.returncode == 0, prepared.stderr
    train(compose("train", ["model=mlp_300_100", "trainer.progress_bar=false"]))
    table = pd.read_csv(project / RUN / runs.METRICS)
    assert not any(c.startswith("val_") for c in table.columns) and "test_acc" in table
