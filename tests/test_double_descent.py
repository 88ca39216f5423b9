"""The double-descent figures and table on runs with known errors: threshold, n·K width and peak."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from overfitlab.analysis import double_descent, panels, registry, rendering  # rendering imports every figure
from overfitlab.analysis.inputs import ReportInputs

WIDTHS = [2, 4, 8, 16, 32, 64, 128]
# mean test error per width: falls, peaks at width 32, falls again (noise 0.2: a higher peak)
TEST_ERROR = {
    0.0: [0.40, 0.30, 0.25, 0.27, 0.30, 0.24, 0.20],
    0.2: [0.45, 0.35, 0.30, 0.36, 0.42, 0.33, 0.28],
}
# training error: reaches 0 (<= 1 %) at width 32 without noise, 64 with it
TRAIN_ERROR = {0.0: [0.4, 0.2, 0.1, 0.03, 0.005, 0.0, 0.0], 0.2: [0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0]}


def params(width: int) -> int:
    return 795 * width + 10  # a one-hidden-layer MLP on 28x28 inputs, 10 classes


def known_study(tmp_path, sizes=(100, 400)) -> ReportInputs:
    rng = np.random.default_rng(0)
    runs, epochs, per_example, counts = [], [], [], []
    for size in sizes:
        for noise, errors in TEST_ERROR.items():
            dataset = f"fashion_mnist+label_noise={noise}+train_size={size}"
            for width, error, train_error in zip(WIDTHS, errors, TRAIN_ERROR[noise], strict=True):
                for seed in range(3):
                    test_acc = 1 - error + rng.normal(0, 0.002)
                    key = {"dataset": f"{dataset}+width={width}", "model": "mlp_width", "seed": seed}
                    counts += [
                        {"dataset": key["dataset"], "split": split, "class": f"c{k}", "count": n // 10}
                        for split, n in (("train", size), ("test", 1000))
                        for k in range(10)
                    ]
                    runs.append(
                        {
                            **key,
                            "width": width,
                            "label_noise": noise,
                            "train_size": size,
                            "n_params": params(width),
                            "final_test_acc": test_acc,
                            "fit_epoch": 10.0 if train_error < 0.01 else np.nan,
                            "epochs": 20,
                        }
                    )
                    epochs.append(
                        pd.DataFrame(
                            {**key, "epoch": range(1, 21), "test_acc": np.linspace(0.5, test_acc, 20)}
                        )
                    )
                    correct = np.arange(size) >= round(train_error * size)
                    per_example.append(
                        pd.DataFrame(
                            {**key, "final_correct": correct, "changed": np.arange(size) < noise * size}
                        )
                    )
    counts = pd.DataFrame(counts).drop_duplicates()
    return ReportInputs(
        epochs=pd.concat(epochs, ignore_index=True),
        runs=pd.DataFrame(runs),
        predictions=pd.DataFrame(),
        counts=counts,
        feature_maps=pd.DataFrame(),
        prepared_root=tmp_path,
        diverged=pd.DataFrame(),
        axes={"width": "model.width", "label_noise": "train.label_noise", "train_size": "prepare.train_size"},
        examples=pd.concat(per_example, ignore_index=True),
    )


def test_threshold_nk_width_and_peak_of_known_curves(tmp_path):
    table = double_descent.summary(known_study(tmp_path)).set_index(["train_size", "noise"])
    clean, noisy = table.loc[(400, 0.0)], table.loc[(400, 0.2)]
    assert clean.interpolation_width == 32 and noisy.interpolation_width == 64  # first train error <= 1 %
    # parameters = n K = 4000 at width (4000 - 10) / 795 = 5.02, interpolated on a log scale between 4 and 8
    assert clean.params_nK_width == pytest.approx(5.0, rel=0.05)
    assert np.isnan(table.loc[(100, 0.0)].params_nK_width)  # n K = 1000: below the smallest net
    assert clean.peak_width == 32 and clean.bottom_width == 8
    assert clean.peak_test_error == pytest.approx(0.30, abs=0.005) and clean.rise == pytest.approx(
        0.05, abs=0.005
    )
    assert noisy.peak_test_error > clean.peak_test_error  # higher with label noise
    assert noisy.peak_low < noisy.peak_test_error < noisy.peak_high


def test_no_peak_when_test_error_only_falls(tmp_path):
    curve = pd.DataFrame({"width": WIDTHS, "test_error": np.linspace(0.5, 0.2, len(WIDTHS))})
    assert np.isnan(double_descent.peak(curve.assign(test_error_low=0, test_error_high=1))["peak_width"])


def test_double_descent_figures_are_drawn_and_fit_the_page(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inputs = known_study(tmp_path)
    names = [n for n, spec in registry.REGISTRY.items() if n.startswith("double_descent")]
    assert len(names) == 4
    for name in names:
        spec = registry.REGISTRY[name]
        assert spec.when(inputs), name
        fig = spec.draw(inputs)
        assert fig.get_size_inches()[0] <= panels.MAX_WIDTH + 1e-9, name
        assert len(rendering.png(fig)) > 10_000, name
        plt.close(fig)
    # not drawn for a study without a width axis
    import dataclasses

    without_width = dataclasses.replace(inputs, axes={"label_noise": "train.label_noise"})
    assert not registry.REGISTRY["double_descent"].when(without_width)
