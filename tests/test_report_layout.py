"""A report that reads well at any study size: figures wrap (at most 4 panels a row, never wider than
panels.MAX_WIDTH), log bands stay inside the plot, the page is navigable (contents, the study's
question first, one collapsible section per variant, tables sorted by a click in a real browser)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overfitlab import examples
from overfitlab.analysis import panels, registry, rendering, tables  # rendering imports every figure
from overfitlab.analysis.inputs import ReportInputs

MODELS = ["mlp_300_100", "mlp_300_100_dropout", "cnn_pool", "cnn_no_pool", "deep_network"]
NOISE = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def big_study(tmp_path: Path) -> ReportInputs:
    """collect's outputs for 6 variants (a label-noise axis) x 5 models x 3 seeds x 6 epochs."""
    rng = np.random.default_rng(0)
    classes = [f"class {i}" for i in range(10)]
    prepared = tmp_path / "data/prepared/fashion_mnist"
    prepared.mkdir(parents=True)
    np.save(prepared / "test_images.npy", rng.integers(0, 255, (20, 1, 28, 28), dtype=np.uint8))
    epochs, runs, predictions, counts = [], [], [], []
    for p in NOISE:
        dataset = f"fashion_mnist+label_noise={p}"
        for split, n in (("train", 50), ("val", 10), ("test", 20)):
            counts += [{"dataset": dataset, "split": split, "class": c, "count": n} for c in classes]
        for model in MODELS:
            for seed in range(3):
                acc = np.clip(0.5 + 0.08 * np.arange(1, 7) - 0.3 * p + rng.normal(0, 0.02, 6), 0, 1)
                loss = np.exp(-np.arange(1, 7) / 3) * rng.uniform(0.01, 3, 6)  # wide spread: a log axis
                key = {"dataset": dataset, "model": model, "seed": seed}
                epochs.append(
                    pd.DataFrame(
                        {
                            **key,
                            "epoch": range(1, 7),
                            "train_acc": acc,
                            "test_acc": acc - 0.1,
                            "val_acc": acc,
                            "train_loss": loss,
                            "test_loss": 2 * loss,
                            "val_loss": loss,
                        }
                    ).assign(gap_acc=0.1, gap_loss=loss, label_noise=p)
                )
                runs.append(
                    {
                        **key,
                        "source_dataset": "fashion_mnist",
                        "label_noise": p,
                        "n_params": 1000,
                        "final_test_acc": acc[-1] - 0.1,
                        "final_train_acc": acc[-1],
                        "final_val_acc": acc[-1],
                        "final_gap_acc": 0.1,
                        "best_val_epoch": 6,
                        "test_acc_at_best_val": acc[-1] - 0.1,
                        "oracle_best_test_acc": acc[-1] - 0.1,
                        "fit_epoch": np.nan,
                        "epochs": 6,
                        "git_commit": "c",
                        "prepared": str(prepared),
                        "status": "complete",
                    }
                )
            labels = rng.integers(0, 10, 20)
            predictions.append(
                pd.DataFrame(
                    {
                        "dataset": dataset,
                        "model": model,
                        "seed": 1,
                        "index": range(20),
                        "label": [classes[i] for i in labels],
                        "predicted": [classes[i] for i in rng.integers(0, 10, 20)],
                        "confidence": rng.uniform(0.1, 1, 20),
                    }
                )
            )
    per_example = known_examples(pd.DataFrame(runs), classes, rng, prepared, n_train=50, epochs=6)
    return ReportInputs(
        epochs=pd.concat(epochs, ignore_index=True),
        runs=pd.DataFrame(runs),
        predictions=pd.concat(predictions, ignore_index=True),
        counts=pd.DataFrame(counts),
        feature_maps=pd.DataFrame(columns=["dataset", "model", "seed", "path"]),
        prepared_root=tmp_path / "data/prepared",
        diverged=pd.DataFrame(),
        axes={"label_noise": "train.label_noise"},
        examples=per_example,
        example_consistency=examples.consistency(per_example),
    )


def known_examples(runs, classes, rng, prepared, n_train: int, epochs: int) -> pd.DataFrame:
    """collect's per-example table for ``runs`` (random learning events; a share ``label_noise`` of
    changed labels), and the prepared training images and manifest the hardest-examples grid reads."""
    np.save(prepared / "train_images.npy", rng.integers(0, 255, (n_train, 1, 28, 28), dtype=np.uint8))
    pd.DataFrame({"example": range(n_train), "split": "train"}).to_csv(prepared / "manifest.csv", index=False)
    frames = []
    for run in runs.itertuples():
        learned = rng.integers(1, epochs + 2, n_train).astype(float)
        learned[learned > epochs] = np.nan
        labels = rng.integers(0, len(classes), n_train)
        changed = rng.uniform(size=n_train) < getattr(run, "label_noise", 0.0)
        forgetting = rng.integers(0, 4, n_train)
        never = np.isnan(learned) & (rng.uniform(size=n_train) < 0.5)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": run.dataset,
                    "model": run.model,
                    "seed": run.seed,
                    "example": range(n_train),
                    "label": labels,
                    "class": [classes[i] for i in labels],
                    "learned_epoch": learned,
                    "forgetting_events": np.where(never, 0, forgetting),
                    "never_correct": never,
                    "unforgettable": ~never & (forgetting == 0),
                    "final_correct": ~np.isnan(learned),
                    "original_label": np.where(changed, (labels + 1) % len(classes), labels),
                    "changed": changed,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def render_page(inputs: ReportInputs, rendered: list, axis_tables: dict) -> str:
    """The page of ``inputs`` with these figures and axis tables (no comparisons, one per-class row)."""
    from overfitlab.analysis import page

    scores = pd.DataFrame(
        {"dataset": ["x"], "model": ["m"], "class": ["a"], "precision": [1.0], "recall": [1.0], "f1": [1.0]}
    ).assign(support=1)
    return page.render_html(
        inputs, rendered, tables.summary_table(inputs.runs), pd.DataFrame(), scores, axis_tables
    )


def panels_per_row(fig) -> int:
    fig.draw_without_rendering()
    rows: dict[float, int] = {}
    for ax in fig.axes:
        if ax.get_visible():
            top = round(ax.get_position().y1, 2)
            rows[top] = rows.get(top, 0) + 1
    return max(rows.values())


@pytest.mark.slow
def test_every_figure_wraps_and_fits_the_page_at_any_study_size(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    inputs = big_study(tmp_path)
    drawn = 0
    for spec in registry.REGISTRY.values():
        if not spec.when(inputs):
            continue
        result = spec.draw(inputs)
        for key, fig in result.items() if isinstance(result, dict) else [(None, result)]:
            name = f"{spec.name} {key or ''}"
            assert fig.get_size_inches()[0] <= panels.MAX_WIDTH + 1e-9, name
            assert panels_per_row(fig) <= panels.MAX_COLUMNS, name
            width = Image.open(io.BytesIO(rendering.png(fig))).size[0]
            assert width <= panels.MAX_WIDTH * panels.DPI * 1.05, (name, width)  # tight bbox: a margin
            plt.close(fig)
            drawn += 1
    assert drawn >= 6 * 5  # per-variant figures: one per variant, not one row of 30 panels


def test_log_bands_stay_above_zero_where_the_linear_band_would_not():
    epochs = pd.DataFrame(
        {"dataset": "d", "model": "m", "seed": [0, 1], "epoch": 1, "test_loss": [0.01, 2.0]}
    )
    linear = tables.curve_bands(epochs, ["test_loss"]).iloc[0]
    assert linear["low"] <= 0  # the premise: a linear band leaves a log plot
    logged = tables.curve_bands(epochs, ["test_loss"], log=True).iloc[0]
    assert 0 < logged["low"] < logged["mean"] < logged["high"]
    assert logged["mean"] == pytest.approx(np.sqrt(0.01 * 2.0))  # the geometric mean


@pytest.mark.slow
def test_the_page_puts_the_question_first_and_is_navigable(tmp_path):

    inputs = big_study(tmp_path)
    rendered = rendering.render(inputs)
    axis = {"label_noise": tables.axis_table(inputs.runs, "label_noise", [])}
    html = render_page(inputs, rendered, axis)
    order = [
        html.index(s)
        for s in ('id="summary"', 'id="against-label_noise"', 'id="comparisons"', 'id="figures-variant"')
    ]
    assert order == sorted(order)
    assert html.count('<details id="figures-variant-') == len(NOISE)  # one per variant, collapsible
    for anchor in set(re.findall(r'href="#([^"]+)"', html)):
        assert f'id="{anchor}"' in html, anchor
    assert "table sortable" in html and "<script>" in html and "http" not in html.split("<script>")[1]


@pytest.mark.slow
def test_tables_sort_by_a_click_in_a_real_browser(tmp_path):
    from browser import Chromium

    inputs = big_study(tmp_path)
    html = render_page(inputs, [], {})
    (tmp_path / "index.html").write_text(html)
    browser = Chromium(tmp_path / "profile")
    try:
        browser.open((tmp_path / "index.html").as_uri())
        browser.wait_for("document.querySelectorAll('table.sortable').length > 0")
        column = "final test acc (%)"
        read = (
            "Array.from(document.querySelector('table.sortable').tBodies[0].rows).map(r => "
            "parseFloat(r.children[[...document.querySelector('table.sortable thead tr').children]"
            f".findIndex(th => th.textContent === '{column}')].textContent))"
        )
        before = browser.evaluate(read)
        assert before != sorted(before)
        click = (
            "[...document.querySelector('table.sortable thead tr').children]"
            f".find(th => th.textContent === '{column}').click()"
        )
        browser.evaluate(click)
        assert browser.evaluate(read) == sorted(before)
        browser.evaluate(click)
        assert browser.evaluate(read) == sorted(before, reverse=True)
    finally:
        browser.close()


@pytest.mark.slow
def test_the_hardest_examples_grid_names_given_and_true_class_of_a_changed_label(tmp_path):
    """Each image is titled with its class name, and 'given←true' by name where a control changed
    the label (the grid once printed label numbers in 5.5 pt text over a mosaic)."""
    import matplotlib

    matplotlib.use("Agg")
    from overfitlab.analysis import memorization

    inputs = big_study(tmp_path)
    drawn = memorization.hardest_examples(inputs)
    noisy = next(fig for key, fig in drawn.items() if not key.endswith("=0.0"))
    titles = [ax.get_title() for ax in noisy.axes if ax.has_data()]
    assert titles and all(t.split("\n")[0].startswith("class ") for t in titles), titles[:4]
    changed = [t for t in titles if "←" in t]
    assert changed and all(t.split("\n")[0].split("←")[1].startswith("class ") for t in changed)
