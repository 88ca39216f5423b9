"""Stages collect and report on runs with known numbers: the figures' numbers are checked exactly."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose, run_cli, set_params
from overfitlab import identity, reports_layout
from overfitlab import runs as run_record
from overfitlab.analysis import registry, rendering
from overfitlab.analysis.tables import confusion, curve_bands, final_accuracy, per_class_scores, summary_table
from overfitlab.collect import collect
from overfitlab.errors import ConfigError
from overfitlab.report import report
from overfitlab.study import load_study

# Known runs: test_acc per epoch for each (model, seed); train_acc = test_acc + 0.1 * epoch.
KNOWN = {
    ("mlp_300_100", 0): [0.50, 0.60, 0.70],
    ("mlp_300_100", 1): [0.52, 0.64, 0.66],
    ("model_d", 0): [0.40, 0.80, 0.75],
    ("model_d", 1): [0.44, 0.70, 0.77],
}


# val_acc where it differs from test_acc: model_d seed 0 peaks on validation at epochs 1 and 2
# (a tie: the first counts) while its test accuracy peaks at epoch 2.
VAL = {("model_d", 0): [0.60, 0.60, 0.50], ("model_d", 1): [0.50, 0.55, 0.65]}

# Final test predictions (label, predicted, confidence) of every known run; classes 0 = "a", 1 = "b".
PREDICTIONS = [[0, 0, 0.9], [0, 1, 0.95], [1, 1, 0.8], [1, 1, 0.7], [1, 0, 0.6]]


def write_known_runs(project):
    """The KNOWN runs as the train stage leaves them: metrics, predictions, the resolved config and
    a done.json whose config_hash is the one the study (3 epochs) gives them now."""
    set_params(project, train={"epochs": 3})
    prepared = project / "data/prepared/fashion_mnist"
    prepared.mkdir(parents=True)
    meta = {
        "class_names": ["a", "b"],
        "class_counts": {"train": [6, 4], "val": [2, 2], "test": [2, 3]},
        "data_version": "d",
    }
    (prepared / "meta.json").write_text(json.dumps(meta))
    images = np.random.default_rng(0).integers(0, 255, (5, 1, 28, 28), dtype=np.uint8)
    np.save(prepared / "test_images.npy", images)
    for (model, seed), test_acc in KNOWN.items():
        run_dir = project / "runs" / "fashion_mnist" / model / f"seed={seed}"
        run_dir.mkdir(parents=True)
        epochs = np.arange(1, 4)
        table = pd.DataFrame(
            {
                "dataset": "fashion_mnist",
                "model": model,
                "seed": seed,
                "epoch": epochs,
                "train_loss": 1.0 / epochs,
                "train_acc": np.array(test_acc) + 0.1 * epochs,
                "val_loss": 1.2 / epochs,
                "val_acc": VAL.get((model, seed), test_acc),
                "test_loss": [1.0, 0.5, 0.7],
                "test_acc": test_acc,
                "test_conf_wrong": [0.3, 0.2, 0.1 * (seed + 1)],
                "test_ece": [0.2, 0.1, 0.05],
            }
        )
        table.to_csv(run_dir / "metrics.csv", index=False)
        np.save(run_dir / "test_predictions.npy", np.array(PREDICTIONS, dtype=np.float32))
        cfg = compose("train", [f"model={model}", f"seed={seed}"])
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
        if model == "model_d":  # one convolution: 4 channels of 28 x 28 for test image 0
            np.savez_compressed(
                run_dir / "feature_maps.npz",
                image_index=np.int64(0),
                **{"00_conv": np.ones((4, 28, 28), dtype=np.float16)},
            )
        (run_dir / "done.json").write_text(
            json.dumps(
                {
                    "dataset": "fashion_mnist",
                    "model": model,
                    "seed": seed,
                    "config_hash": identity.config_hash(identity.identity(cfg, meta)),
                    "data_version": "d",
                    "git_commit": "c",
                    "class_names": ["a", "b"],
                    "n_params": 100 if model == "model_d" else 200,
                    "epochs": 3,
                    "wall_time_s": 1.0,
                    "device": "cpu",
                    "mlflow_run_id": f"r{model}{seed}",
                    "final": {},
                }
            )
        )


def test_collect_builds_the_tidy_table_run_summary_and_metrics(project):
    write_known_runs(project)
    collect()
    written = {p.name for p in (project / reports_layout.METRICS).iterdir()}
    assert written == {o.name for o in reports_layout.OUTPUTS}  # what it writes is what the layout names
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    assert len(epochs) == 12
    assert {
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
        "gap_acc",
        "gap_loss",
    } <= set(epochs.columns)
    csv = pd.read_csv(project / "reports/metrics/epochs.csv")
    pd.testing.assert_frame_equal(epochs, csv, check_exact=False)
    row = epochs.query("model == 'model_d' and seed == 0 and epoch == 2").iloc[0]
    assert row.gap_acc == pytest.approx(0.2) and row.gap_loss == pytest.approx(0.5 - 0.5)
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    d0 = runs.query("model == 'model_d' and seed == 0").iloc[0]
    assert d0.final_test_acc == pytest.approx(0.75) and d0.min_test_loss_epoch == 2
    assert d0.oracle_best_test_epoch == 2 and d0.oracle_best_test_acc == pytest.approx(0.8)
    summary = json.loads((project / "reports/metrics/summary.json").read_text())
    mlp = summary["fashion_mnist"]["mlp_300_100"]
    assert mlp["test_acc_mean"] == pytest.approx(0.68)
    assert mlp["test_acc_sd"] == pytest.approx(np.std([0.7, 0.66], ddof=1), abs=1e-6)  # rounded to 6 places
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
    # 0.62 ± t(0.975, df=1) * sd / sqrt(2) = 0.62 ± 12.7062 * 0.0282843 / 1.41421 = 0.62 ± 0.254124
    half = 0.254124
    assert b["mean"] == pytest.approx(0.62) and b.n == 2
    assert b.low == pytest.approx(0.62 - half, abs=1e-6) and b.high == pytest.approx(0.62 + half, abs=1e-6)
    train = bands.query("model == 'model_d' and metric == 'train_acc' and epoch == 3").iloc[0]
    assert train["mean"] == pytest.approx(0.76 + 0.3)
    table = summary_table(runs).set_index("model")
    assert table.loc["model_d", "test_acc_mean"] == pytest.approx(76.0)
    assert table.loc["model_d", "test_acc_sd"] == pytest.approx(1.414214)  # sd of 75, 77
    assert table.loc["mlp_300_100", "best_val_epoch_median"] == 3 and table.loc["model_d", "params"] == 100
    assert table.loc["model_d", "conf_wrong_mean"] == pytest.approx(15.0)  # final 0.1 and 0.2
    # Time to fit (train_acc >= 99 %): model_d seed 0 reaches 0.8 + 0.2 = 1.0 at epoch 2 and seed 1
    # 0.77 + 0.3 = 1.07 at epoch 3; mlp never gets past 0.7 + 0.3 = 1.0 at epoch 3 (seed 0 only).
    assert runs.set_index(["model", "seed"]).fit_epoch.to_dict() == pytest.approx(
        {("mlp_300_100", 0): 3, ("mlp_300_100", 1): float("nan"), ("model_d", 0): 2, ("model_d", 1): 3},
        nan_ok=True,
    )
    assert table.loc["model_d", "fit_epoch_median"] == 2.5 and table.loc["mlp_300_100", "seeds_fitted"] == 1


def test_report_writes_figures_and_a_self_contained_page(project):
    write_known_runs(project)
    collect()
    page = report()
    html = page.read_text()
    for name in (
        "final_test_accuracy",
        "learning_curves",
        "generalization_gap",
        "loss_curves",
        "confusion_matrices",
        "class_balance",
        "prediction_grid",
    ):
        png = project / "reports/figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'alt="{name}"' in html
    assert "data:image/png;base64," in html and '<img src="figures' not in html  # self-contained
    assert "76.00 ± 1.41" in html  # model_d: mean ± sd of final test accuracy in percent
    # The 95 % t-interval of the mean of [75, 77], 76 ± 12.706 * 1.4142 / sqrt(2) = [63.29, 88.71] (not
    # [min, max]), is narrower than what 5 test images allow: the Wilson interval of the pooled 8 of 10
    # correct answers, [49.02, 94.33], is shown (stats.accuracy_ci).
    assert "63.29 – 88.71" not in html and "49.02 – 94.33" in html
    comparisons = pd.read_csv(project / "reports/figures/comparisons.csv")
    row = comparisons.iloc[0]
    assert (row.a, row.b, row.U, row.p) == ("mlp_300_100", "model_d", 0.0, pytest.approx(1 / 3))
    assert "N too small: p cannot go below 0.333" in html


def test_study_rejects_unknown_names_and_empty_seeds(project):
    set_params(project, study={"models": ["nope"]})
    with pytest.raises(ConfigError, match="study.models has unknown model 'nope'; allowed: .*deep_network"):
        load_study()
    set_params(project, study={"models": ["model_d"], "seeds": []})
    with pytest.raises(ConfigError, match="study.seeds"):
        load_study()


def test_study_axes_name_the_run_directories_and_label_noise_is_one_of_them(project):
    from conftest import set_params

    set_params(project, study={"axes": {"train.label_noise": [0.0, 1.0], "train.lr": [0.001, 0.01]}})
    study = load_study()
    assert study.axes == {"train.label_noise": [0.0, 1.0], "train.lr": [0.001, 0.01]}
    assert len(study.variants()) == 4
    assert (
        study.run_dir(project / "runs", "fashion_mnist", "model_d", study.variants()[-1], 1)
        == project / "runs/fashion_mnist/model_d/label_noise=1.0/lr=0.01/seed=1"
        == run_record.run_dir(
            project / "runs", "fashion_mnist", "model_d", {"a.label_noise": 1.0, "b.lr": 0.01}, 1
        )
    )
    # the old special case is gone, with a one-line hint
    set_params(project, study={"axes": None, "label_noise": [0.0, 1.0]})
    with pytest.raises(ConfigError, match=r"study.axes: \{train.label_noise: \[0.0, 1.0\]\}"):
        load_study()
    for bad, message in (
        ({"train.lr": 0.1}, "must be a non-empty list"),
        ({"train.lr": [0.1, 0.1]}, "has duplicates"),
        ({"seed": [0, 1]}, "are study.datasets/models/seeds"),
        ([0.1], "must map config keys to value lists"),
    ):
        set_params(project, study={"label_noise": None, "axes": bad})
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["study"].pop("label_noise")
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ConfigError, match=message):
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
    a = scores.loc["a", ["precision", "recall", "f1", "support"]]
    assert a.tolist() == pytest.approx([0.5, 0.5, 0.5, 2])
    counts = pd.read_csv(project / "reports/metrics/class_counts.csv")
    assert counts.query("split == 'test'")["count"].tolist() == [2, 3]


# ---- issue 15: the test set selects nothing in the summary; stale runs are refused


@pytest.mark.slow
def test_summary_chooses_the_epoch_on_validation_and_labels_the_test_chosen_one_an_oracle(project):
    write_known_runs(project)
    collect()
    runs = pd.read_csv(project / "reports/metrics/runs.csv").set_index(["model", "seed"])
    # model_d seed 0: val_acc 0.60, 0.60, 0.50 -> epoch 1 (first of the tie), where test_acc is 0.40;
    # the test set itself would have picked epoch 2 (0.80): that is the oracle, not a result.
    chosen = ["best_val_epoch", "test_acc_at_best_val"]
    oracle = ["oracle_best_test_epoch", "oracle_best_test_acc"]
    assert runs.loc[("model_d", 0), chosen].tolist() == pytest.approx([1, 0.40])
    assert runs.loc[("model_d", 0), oracle].tolist() == pytest.approx([2, 0.80])
    assert runs.loc[("model_d", 1), chosen].tolist() == pytest.approx([3, 0.77])
    assert not {"best_test_epoch", "best_test_acc"} & set(runs.columns)
    table = summary_table(runs.reset_index()).set_index("model")
    assert table.loc["model_d", "best_val_epoch_median"] == 2
    assert table.loc["model_d", "test_acc_at_best_val_mean"] == pytest.approx(58.5)
    assert table.loc["model_d", "oracle_best_test_acc_mean"] == pytest.approx(78.5)
    html = report().read_text()
    assert "test acc at best-val epoch (%)" in html and "58.50" in html
    assert "oracle: max over epochs of test acc (%) — chosen on the test set, optimistic" in html
    assert "best test acc" not in html


def test_summary_json_keeps_its_keys(project):
    """summary.json is the DVC metrics file: the validation-chosen numbers go to runs.csv only."""
    write_known_runs(project)
    collect()
    summary = json.loads((project / "reports/metrics/summary.json").read_text())
    assert set(summary["fashion_mnist"]["model_d"]) == {
        "n_seeds",
        "n_params",
        "n_at_chance",
        *(f"{m}_{s}" for m in ("test_acc", "train_acc", "val_acc", "gap_acc") for s in ("mean", "sd")),
    }


def collect_error(capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        collect()
    assert exc.value.code == 2
    assert not Path("reports/metrics/epochs.parquet").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_collect_refuses_runs_trained_with_another_config_than_the_study_now_has(project, capsys):
    write_known_runs(project)
    set_params(project, train={"epochs": 5})  # edited after training, train stage not rerun
    error = collect_error(capsys)
    assert error.startswith("error: 4 run(s) were trained with another config than the study now defines")
    assert "runs/fashion_mnist/mlp_300_100/seed=0 (trainer.max_epochs: 3 -> 5)" in error
    assert "run `dvc repro` (or the train stage)" in error


def test_collect_refuses_a_done_marker_of_another_run_or_of_other_data(project, capsys):
    write_known_runs(project)
    seed1 = project / "runs/fashion_mnist/model_d/seed=1/done.json"
    seed1.write_text((project / "runs/fashion_mnist/model_d/seed=0/done.json").read_text())
    error = collect_error(capsys)
    assert "1 run(s)" in error and "runs/fashion_mnist/model_d/seed=1 (its done.json is for seed 0)" in error

    write_known_runs_again = project / "data/prepared/fashion_mnist/meta.json"
    meta = json.loads(write_known_runs_again.read_text())
    write_known_runs_again.write_text(json.dumps(meta | {"data_version": "prepared again, differently"}))
    error = collect_error(capsys)
    assert "4 run(s)" in error
    assert "the numerics code or the prepared data changed since it was trained" in error


@pytest.mark.slow
def test_collect_accepts_what_the_train_stage_trained_and_refuses_it_after_an_edit(prepared, project):
    # As dvc.yaml's train stage runs it; integer label-noise values check the sweep's spelling.
    set_params(
        project,
        study={"models": ["mlp_300_100"], "seeds": [0], "axes": {"train.label_noise": [0, 1]}},
        train={"epochs": 1},
    )
    result = run_cli(
        "python",
        "-m",
        "overfitlab.train",
        "--multirun",
        "optimizer=adam",
        "trainer.progress_bar=false",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    collect()
    assert len(pd.read_csv(project / "reports/metrics/runs.csv")) == 2
    set_params(project, train={"lr": 0.01})
    result = run_cli("python", "-m", "overfitlab.collect", cwd=project)
    assert result.returncode == 2
    assert "2 run(s) were trained with another config" in result.stderr
    assert "optimizer.lr: 0.001 -> 0.01" in result.stderr


# ---- issue 12: the run layout comes from runs.py; feature maps carry whose they are in data


@pytest.mark.slow
def test_feature_maps_say_whose_they_are_in_data_not_in_file_names(project):
    write_known_runs(project)
    collect()
    metrics = project / "reports/metrics"
    index = pd.read_csv(metrics / "feature_maps.csv")
    # model_d's median seed of 2 is the lower one: seed 0 (0.75 < 0.77); the MLP has no convolution.
    assert index[["dataset", "model", "seed"]].values.tolist() == [["fashion_mnist", "model_d", 0]]
    (metrics / "feature_maps" / index.file[0]).rename(metrics / "feature_maps" / "anything.npz")
    index.assign(file="anything.npz").to_csv(metrics / "feature_maps.csv", index=False)
    html = report().read_text()
    assert (project / "reports/figures/feature_maps__fashion_mnist__model_d__seed=0.png").exists()
    assert 'alt="feature_maps__fashion_mnist__model_d__seed=0"' in html


@pytest.mark.slow
def test_image_folder_data_and_extra_test_sets_reach_the_page(project):
    """What the image-folder pipeline test checks of collect and report, on known runs."""
    write_known_runs(project)
    prepared = project / "data/prepared/fashion_mnist"
    meta = json.loads((prepared / "meta.json").read_text()) | {
        "loader": "image_folder",
        "source_files": 4,
        "split_by": "source",
        "groups_per_split": {"train": 2},
        "counts": {"train": 10, "val": 4, "test": 5},
        "background_dropped": 0,
        "leakage": {"shared_contents": 0, "examples_checked": 19, "pairs": []},
        "skipped": [["a/truncated.png", "cannot decode"], [".DS_Store", "ignored: hidden"]],
    }
    (prepared / "meta.json").write_text(json.dumps(meta))
    pd.DataFrame(
        {
            "split": "train",
            "label": [0, 1] * 5,
            "rotation": 0,
            "flip": "none",
            "source": "s",
            "top": range(10),
            "left": 0,
        }
    ).to_csv(prepared / "manifest.csv", index=False)
    np.save(prepared / "train_images.npy", np.zeros((10, 1, 28, 28), dtype=np.uint8))
    for run_dir in (project / "runs/fashion_mnist").glob("*/seed=*"):
        metrics = pd.read_csv(run_dir / "metrics.csv")
        metrics.assign(**{"test_acc/scope2": [0.3, 0.4, 0.5], "test_loss/scope2": 2.0}).to_csv(
            run_dir / "metrics.csv", index=False
        )
    collect()
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    assert runs["final_test_acc/scope2"].tolist() == pytest.approx([0.5] * 4)
    # model_d seed 0 chooses epoch 1 on validation: the extra test set is read at that epoch too.
    chosen = runs.set_index(["model", "seed"]).loc[("model_d", 0), "test_acc_at_best_val/scope2"]
    assert chosen == pytest.approx(0.3)
    assert sorted(final_accuracy(runs).dataset.unique()) == ["fashion_mnist", "fashion_mnist | test@scope2"]
    page = report().read_text()
    assert (project / "reports/figures/sample_tiles.png").exists()
    assert "no tile content appears in two splits" in page and "a/truncated.png" in page
    assert "1 file(s) skipped as unusable, 1 ignored" in page
    assert "final test acc, scope2 (%)" in page


# ---- issue 12: figures register themselves; adding one is one decorated function


def test_every_figure_is_registered_once_with_a_caption_and_only_drawn_when_it_applies(project):
    order = rendering.in_page_order()  # rendering.PAGE: the modules of the page's sections, in order
    sections = list(registry.SECTIONS)
    places = [sections.index(spec.section) for spec in order]
    assert places == sorted(places)  # PAGE follows the page's sections
    by_section = {s: [spec.name for spec in order if spec.section == s] for s in sections}
    assert by_section["comparison"] == ["final_test_accuracy", "regularization"]
    assert by_section["variant"][:3] == ["learning_curves", "generalization_gap", "loss_curves"]
    assert by_section["inside"] == ["class_balance", "feature_maps", "sample_tiles"]
    assert all(spec.caption for spec in registry.REGISTRY.values())
    with pytest.raises(ValueError, match="registered twice"):
        registry.figure("learning_curves")(lambda inputs: None)
    with pytest.raises(ValueError, match="no caption: give <lambda> a docstring"):
        registry.figure("undocumented")(lambda inputs: None)
    assert "undocumented" not in registry.REGISTRY
    write_known_runs(project)
    collect()
    report()
    drawn = {p.stem for p in (project / "reports/figures").glob("*.png")}
    # No label-noise axis, no control, no image folder: those figures do not apply.
    assert not any(name.startswith(("against_axis", "clean_vs_corrupted", "sample_tiles")) for name in drawn)
    assert {"final_test_accuracy", "confusion_matrices", "prediction_grid", "class_balance"} <= drawn


@pytest.mark.slow
def test_a_new_figure_is_one_decorated_function(project, monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))

    @registry.figure("seeds_per_model")
    def seeds_per_model(inputs):
        """How many <seeds> each model
        has."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        inputs.runs.groupby("model").size().plot.bar(ax=ax)
        return fig

    @registry.figure("never", when=lambda inputs: False)
    def never(inputs):
        """Not drawn."""
        raise AssertionError("a figure whose `when` is false is not drawn")

    write_known_runs(project)
    collect()
    html = report().read_text()
    assert (project / "reports/figures/seeds_per_model.png").exists()
    assert 'alt="seeds_per_model"' in html and "How many &lt;seeds&gt; each model has." in html
    assert 'alt="never"' not in html


# ---- dvc.yaml: the collect and report stages depend on what they import and read


def test_report_reads_what_collect_writes_and_depends_on_it():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    wanted = {reports_layout.metrics_path(name) for name in reports_layout.REPORT_INPUTS}
    outs = {
        out if isinstance(out, str) else next(iter(out)) for out in stages["collect"]["outs"]
    }  # {path: opts}
    assert outs == {reports_layout.metrics_path(o.name) for o in reports_layout.OUTPUTS if not o.metric}
    assert wanted <= set(stages["report"]["deps"])


def test_the_templates_ship_with_the_package():
    """The page's and the pipeline's templates are read, not imported: package data."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["overfitlab"]
    package = ROOT / "src/overfitlab"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert package / "analysis/templates/report.html.j2" in shipped
    assert package / "pipeline/dvc.template.yaml" in shipped


@pytest.mark.slow
def test_a_diverged_run_is_listed_and_left_out_of_every_statistic(project):
    """A run whose loss became NaN (done.json status "diverged", no finite epoch) must not enter the
    means, tests or curves, and the report must say which run was left out."""
    write_known_runs(project)
    done_file = project / "runs/fashion_mnist/model_d/seed=1/done.json"
    done = json.loads(done_file.read_text()) | {"status": "diverged", "diverged_epoch": 1, "epochs": 0}
    done_file.write_text(json.dumps(done))
    (done_file.parent / "metrics.csv").write_text("dataset,model,seed,epoch\n")
    collect()
    runs = pd.read_csv(project / "reports/metrics/runs.csv").set_index(["model", "seed"])
    assert runs.loc[("model_d", 1), "status"] == "diverged" and pd.isna(
        runs.loc[("model_d", 1), "final_test_acc"]
    )
    assert (runs.drop(index=("model_d", 1)).status == "complete").all()
    summary = json.loads((project / "reports/metrics/summary.json").read_text())["fashion_mnist"]["model_d"]
    assert summary["n_seeds"] == 1 and summary["test_acc_mean"] == pytest.approx(0.75)
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    assert not ((epochs.model == "model_d") & (epochs.seed == 1)).any()
    html = report().read_text()
    assert "Diverged runs (left out of every statistic below)" in html
    comparisons = pd.read_csv(project / "reports/figures/comparisons.csv").iloc[0]
    assert (comparisons.n_a, comparisons.n_b) == (2, 1)


def test_a_run_that_never_left_chance_is_flagged_kept_in_the_statistics_and_listed(project):
    write_known_runs(project)
    metrics = project / "runs/fashion_mnist/mlp_300_100/seed=1/metrics.csv"
    table = pd.read_csv(metrics)
    table["train_acc"] = [0.50, 0.49, 0.51]  # two classes: chance is 50 %
    table.to_csv(metrics, index=False)
    collect()
    runs = pd.read_csv(project / "reports/metrics/runs.csv").set_index(["model", "seed"])
    assert runs["at_chance"].to_dict() == {
        ("mlp_300_100", 0): False,
        ("mlp_300_100", 1): True,
        ("model_d", 0): False,
        ("model_d", 1): False,
    }
    summary = json.loads((project / "reports/metrics/summary.json").read_text())["fashion_mnist"]
    assert summary["mlp_300_100"]["n_at_chance"] == 1 and summary["mlp_300_100"]["n_seeds"] == 2
    assert summary["mlp_300_100"]["train_acc_mean"] == pytest.approx((0.70 + 0.3 + 0.51) / 2)  # kept
    html = report().read_text()
    section = html.split('id="at-chance"')[1].split("<h2")[0]
    assert "never left chance" in html and "mlp_300_100" in section and "model_d" not in section
