"""Stages collect and report on runs with known numbers: the figures' numbers are checked exactly."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from overfitlab.collect import collect
from overfitlab.errors import ConfigError
from overfitlab.report import confusion, curve_bands, final_accuracy, per_class_scores, report, summary_table
from overfitlab.study import load_study

# Known runs: test_acc per epoch for each (model, seed); train_acc = test_acc + 0.1 * epoch.
KNOWN = {
    ("mlp_300_100", 0): [0.50, 0.60, 0.70],
    ("mlp_300_100", 1): [0.52, 0.64, 0.66],
    ("model_d", 0): [0.40, 0.80, 0.75],
    ("model_d", 1): [0.44, 0.70, 0.77],
}


# Final test predictions (label, predicted, confidence) of every known run; classes 0 = "a", 1 = "b".
PREDICTIONS = [[0, 0, 0.9], [0, 1, 0.95], [1, 1, 0.8], [1, 1, 0.7], [1, 0, 0.6]]


def write_known_runs(project):
    prepared = project / "data/prepared/fashion_mnist"
    prepared.mkdir(parents=True)
    (prepared / "meta.json").write_text(json.dumps({
        "class_names": ["a", "b"], "class_counts": {"train": [6, 4], "val": [2, 2], "test": [2, 3]}}))
    np.save(prepared / "test_images.npy", np.random.default_rng(0).integers(0, 255, (5, 1, 28, 28), dtype=np.uint8))
    for (model, seed), test_acc in KNOWN.items():
        run_dir = project / "runs" / "fashion_mnist" / model / f"seed={seed}"
        run_dir.mkdir(parents=True)
        epochs = np.arange(1, 4)
        table = pd.DataFrame({"dataset": "fashion_mnist", "model": model, "seed": seed, "epoch": epochs,
                              "train_loss": 1.0 / epochs, "train_acc": np.array(test_acc) + 0.1 * epochs,
                              "val_loss": 1.2 / epochs, "val_acc": test_acc,
                              "test_loss": [1.0, 0.5, 0.7], "test_acc": test_acc,
                              "test_conf_wrong": [0.3, 0.2, 0.1 * (seed + 1)], "test_ece": [0.2, 0.1, 0.05]})
        table.to_csv(run_dir / "metrics.csv", index=False)
        np.save(run_dir / "test_predictions.npy", np.array(PREDICTIONS, dtype=np.float32))
        (run_dir / "done.json").write_text(json.dumps({
            "dataset": "fashion_mnist", "model": model, "seed": seed, "config_hash": "h", "data_version": "d",
            "git_commit": "c", "class_names": ["a", "b"], "n_params": 100 if model == "model_d" else 200, "epochs": 3, "wall_time_s": 1.0,
            "device": "cpu", "mlflow_run_id": f"r{model}{seed}", "final": {}}))


def test_collect_builds_the_tidy_table_run_summary_and_metrics(project):
    write_known_runs(project)
    collect()
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    assert len(epochs) == 12
    assert {"dataset", "model", "seed", "epoch", "train_loss", "train_acc", "val_loss", "val_acc",
            "test_loss", "test_acc", "gap_acc", "gap_loss"} <= set(epochs.columns)
    pd.testing.assert_frame_equal(epochs, pd.read_csv(project / "reports/metrics/epochs.csv"), check_exact=False)
    row = epochs.query("model == 'model_d' and seed == 0 and epoch == 2").iloc[0]
    assert row.gap_acc == pytest.approx(0.2) and row.gap_loss == pytest.approx(0.5 - 0.5)
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    d0 = runs.query("model == 'model_d' and seed == 0").iloc[0]
    assert d0.final_test_acc == pytest.approx(0.75) and d0.best_test_epoch == 2 and d0.best_test_acc == pytest.approx(0.8)
    assert d0.min_test_loss_epoch == 2
    summary = json.loads((project / "reports/metrics/summary.json").read_text())
    mlp = summary["fashion_mnist"]["mlp_300_100"]
    assert mlp["test_acc_mean"] == pytest.approx(0.68) and mlp["test_acc_sd"] == pytest.approx(np.std([0.7, 0.66], ddof=1), abs=1e-6)  # rounded to 6 places
    assert mlp["n_seeds"] == 2 and mlp["n_params"] == 200
    curve = pd.read_csv(project / "reports/metrics/curves/fashion_mnist__model_d.csv")
    assert curve.test_acc.tolist() == pytest.approx([0.42, 0.75, 0.76])


def test_collect_refuses_an_incomplete_study(project):
    write_known_runs(project)
    (project / "runs/fashion_mnist/model_d/seed=1/done.json").unlink()
    with pytest.raises(SystemExit) as exc:
        collect()
    assert exc.value.code == 2
    assert not (project / "reports/metrics/epochs.parquet").exists()


def test_numbers_behind_the_box_plot_and_the_curves(project):
    write_known_runs(project)
    collect()
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    box = final_accuracy(runs)
    assert box.query("model == 'model_d'").test_acc_pct.tolist() == pytest.approx([75.0, 77.0])
    assert box.query("model == 'mlp_300_100'").test_acc_pct.tolist() == pytest.approx([70.0, 66.0])
    bands = curve_bands(epochs, ["train_acc", "test_acc"])
    b = bands.query("model == 'mlp_300_100' and metric == 'test_acc' and epoch == 2").iloc[0]
    values = [0.60, 0.64]
    half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
    assert b["mean"] == pytest.approx(0.62) and b.n == 2
    assert b.low == pytest.approx(0.62 - half) and b.high == pytest.approx(0.62 + half)
    train = bands.query("model == 'model_d' and metric == 'train_acc' and epoch == 3").iloc[0]
    assert train["mean"] == pytest.approx(0.76 + 0.3)
    table = summary_table(runs).set_index("model")
    assert table.loc["model_d", "test_acc_mean"] == pytest.approx(76.0)
    assert table.loc["model_d", "test_acc_sd"] == pytest.approx(100 * np.std([0.75, 0.77], ddof=1))
    assert table.loc["model_d", "best_epoch_median"] == 2.5 and table.loc["model_d", "params"] == 100
    assert table.loc["model_d", "conf_wrong_mean"] == pytest.approx(15.0)  # final 0.1 and 0.2
    # Time to fit (train_acc >= 99 %): model_d seed 0 reaches 0.8 + 0.2 = 1.0 at epoch 2 and seed 1
    # 0.77 + 0.3 = 1.07 at epoch 3; mlp never gets past 0.7 + 0.3 = 1.0 at epoch 3 (seed 0 only).
    assert runs.set_index(["model", "seed"]).fit_epoch.to_dict() == pytest.approx(
        {("mlp_300_100", 0): 3, ("mlp_300_100", 1): float("nan"), ("model_d", 0): 2, ("model_d", 1): 3}, nan_ok=True)
    assert table.loc["model_d", "fit_epoch_median"] == 2.5 and table.loc["mlp_300_100", "seeds_fitted"] == 1


def test_report_writes_figures_and_a_self_contained_page(project):
    write_known_runs(project)
    collect()
    page = report()
    html = page.read_text()
    for name in ("final_test_accuracy", "learning_curves", "generalization_gap", "loss_curves",
                 "confusion_matrices", "class_balance", "prediction_grid"):
        png = project / "reports/figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'alt="{name}"' in html
    assert "data:image/png;base64," in html and "<img src=\"figures" not in html  # self-contained
    assert "76.00 ± 1.41" in html  # model_d: mean ± sd of final test accuracy in percent
    assert "75.00 – 77.00" in html  # bootstrap CI of 2 seeds: the two values themselves
    comparisons = pd.read_csv(project / "reports/figures/comparisons.csv")
    row = comparisons.iloc[0]
    assert (row.a, row.b, row.U, row.p) == ("mlp_300_100", "model_d", 0.0, pytest.approx(1 / 3))
    assert "N too small: p cannot go below 0.333" in html


def test_study_rejects_unknown_names_and_empty_seeds(project):
    from conftest import set_params
    from overfitlab.errors import ConfigError

    set_params(project, study={"models": ["nope"]})
    with pytest.raises(ConfigError, match="study.models has unknown model 'nope'; allowed: .*deep_network"):
        load_study()
    set_params(project, study={"models": ["model_d"], "seeds": []})
    with pytest.raises(ConfigError, match="study.seeds"):
        load_study()


def test_collect_looks_for_runs_of_the_controlled_variant(project):
    from conftest import set_params

    set_params(project, train={"label_noise": 0.2})
    study = load_study()
    assert study.label_noise == [0.2]
    assert study.run_dir(project / "runs", "fashion_mnist", "model_d", 1, 0.2) == \
        project / "runs" / "fashion_mnist+labels0.2" / "model_d" / "seed=1"
    # A list in study.label_noise makes each fraction a data variant of its own (0: the real data).
    set_params(project, study={"label_noise": [0.0, 1.0]})
    study = load_study()
    assert [study.data_label("fashion_mnist", p) for p in study.label_noise] == \
        ["fashion_mnist", "fashion_mnist+labels1"]
    set_params(project, study={"label_noise": [0.0, 1.5]})
    with pytest.raises(ConfigError, match=r"params.yaml: study.label_noise=1.5 must be a fraction from 0 to 1"):
        load_study()


def test_confusion_and_per_class_scores_of_the_median_seed(project):
    write_known_runs(project)
    collect()
    predictions = pd.read_parquet(project / "reports/metrics/predictions.parquet")
    # Median of 2 seeds = the lower one: model_d seed 0 (0.75 < 0.77), mlp seed 1 (0.66 < 0.70).
    assert predictions.groupby("model").seed.first().to_dict() == {"mlp_300_100": 1, "model_d": 0}
    assert predictions.query("model == 'model_d'")["index"].tolist() == [0, 1, 2, 3, 4]  # test-set order
    table = confusion(predictions).query("model == 'model_d'").set_index(["label", "predicted"])
    assert table["count"].to_dict() == {("a", "a"): 1, ("a", "b"): 1, ("b", "a"): 1, ("b", "b"): 2}
    assert table.loc[("b", "b"), "fraction_of_true"] == pytest.approx(2 / 3)
    scores = per_class_scores(predictions).query("model == 'model_d'").set_index("class")
    # class b: tp 2, predicted 3, actual 3 -> precision 2/3, recall 2/3; class a: tp 1 of 2 and 2.
    assert scores.loc["b", ["precision", "recall", "f1"]].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert scores.loc["a", ["precision", "recall", "f1", "support"]].tolist() == pytest.approx([0.5, 0.5, 0.5, 2])
    counts = pd.read_csv(project / "reports/metrics/class_counts.csv")
    assert counts.query("split == 'test'")["count"].tolist() == [2, 3]
