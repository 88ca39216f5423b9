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


def test_learning_events_of_known_records():
    """Learned epoch = first epoch after which the example stays correct; forgetting = correct ->
    wrong between consecutive epochs (Toneva et al.); never correct = wrong at every epoch."""
    import numpy as np

    from overfitlab.examples import learning_events

    correct = np.array(
        [
            [1, 0, 0, 1, 0],
            [1, 1, 0, 0, 0],
            [1, 0, 0, 1, 1],
            [1, 1, 0, 0, 1],
        ],
        dtype=bool,
    )
    events = learning_events(correct)
    assert events["learned_epoch"].tolist()[:2] == [1, 4] and events["learned_epoch"][4] == 3
    assert np.isnan(events["learned_epoch"][[2, 3]]).all()
    assert events["forgetting_events"].tolist() == [0, 1, 0, 2, 0]
    assert events["never_correct"].tolist() == [False, False, True, False, False]


def write_known_records(project, epochs=3):
    """Per-example records for the known runs of test_collect_report (2 classes, 10 training images):
    example k of seed s is correct from epoch min(k, epochs + 1) on, except that example 9 is
    forgotten once (correct at epoch 1 only, then learned again at the last epoch) in seed 1."""
    import numpy as np

    from test_collect_report import KNOWN

    prepared = project / "data/prepared/fashion_mnist"
    labels = np.array([0] * 6 + [1] * 4)
    manifest = pd.DataFrame(
        {
            "example": range(10),
            "split": "train",
            "source": "train",
            "source_index": range(10),
            "label": labels,
        }
    )
    manifest.to_csv(prepared / "manifest.csv", index=False)
    np.save(prepared / "train_images.npy", np.zeros((10, 1, 28, 28), dtype=np.uint8))
    for model, seed in KNOWN:
        correct = np.array([[e >= min(k, epochs + 1) for k in range(10)] for e in range(1, epochs + 1)])
        if seed == 1:
            correct[:, 9] = [True, False, True]
        predicted = np.where(correct[-1], labels, 1 - labels)
        run_dir = project / "runs" / "fashion_mnist" / model / f"seed={seed}"
        runs.write_train_examples(run_dir, correct, np.arange(10), labels, predicted)


def test_collect_measures_examples_and_the_report_draws_them(project):
    import json

    from overfitlab.collect import collect
    from overfitlab.report import report
    from test_collect_report import write_known_runs

    write_known_runs(project)
    write_known_records(project)
    collect()
    table = pd.read_parquet(project / "reports/metrics/examples.parquet")
    assert len(table) == 4 * 10
    one = table[(table.model == "model_d") & (table.seed == 0)].set_index("example")
    assert one.learned_epoch.iloc[:4].tolist() == [1, 1, 2, 3] and one.learned_epoch.iloc[4:].isna().all()
    assert one["class"].tolist() == ["a"] * 6 + ["b"] * 4
    forgotten = table[(table.seed == 1) & (table.example == 9)]
    assert forgotten.forgetting_events.tolist() == [1, 1] and forgotten.learned_epoch.tolist() == [3, 3]
    consistency = pd.read_parquet(project / "reports/metrics/example_consistency.parquet")
    row = consistency[(consistency.model == "model_d") & (consistency.example == 9)].iloc[0]
    assert row.consistency == 0.5 and row.seeds == 2 and row.mean_forgetting_events == 0.5
    summary = json.loads((project / "reports/metrics/summary.json").read_text())
    mlp = summary["examples"]["fashion_mnist"]["mlp_300_100"]["all"]
    # unforgettable: examples 0..3 in both seeds (9 is forgotten in seed 1, 4..8 never correct)
    assert mlp["unforgettable_share"] == 0.4 and mlp["never_correct_share"] == pytest.approx(0.55)
    assert mlp["median_learned_epoch"] is None  # over half are not learned by the last epoch
    report()
    for name in ("learned_epoch", "forgetting_events", "consistency_per_class", "hardest_examples"):
        assert (project / "reports/figures" / f"{name}.png").stat().st_size > 5000, name
    assert "Which training examples were learned late" in (project / "reports/index.html").read_text()


@pytest.mark.slow
def test_a_study_without_validation_split_collects_and_reports(project):
    """prepare.val_size: 0: nothing is chosen on validation; collect and the report say so."""
    import sys

    from conftest import run_cli, set_params

    set_params(project, prepare={"val_size": 0}, study={"models": ["mlp_300_100"], "seeds": [0, 1]})
    for stage in ("overfitlab.prepare", "overfitlab.train", "overfitlab.collect", "overfitlab.report"):
        args = ["-m", "trainer.progress_bar=false"] if stage == "overfitlab.train" else []
        result = run_cli(sys.executable, "-m", stage, *args)
        assert result.returncode == 0, (stage, result.stderr[-2000:])
    runs_table = pd.read_csv(project / "reports/metrics/runs.csv")
    assert "final_test_acc" in runs_table and not any(c.startswith("val_") for c in runs_table.columns)
    page = (project / "reports/index.html").read_text()
    assert "no validation split" in page
