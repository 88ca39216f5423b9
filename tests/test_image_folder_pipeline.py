"""Issue 3 end to end: a messy two-class folder of fields plus an extra test set goes through
prepare -> train -> collect -> report; the extra test set is evaluated every epoch and carried
through as its own column, curve and box; the report lists the skipped files and the leakage check."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import (
    IMAGE_FOLDER_BAD,
    compose,
    field,
    image_folder_overrides,
    messy_folder,
    save_image,
    set_params,
)
from overfitlab.collect import collect
from overfitlab.prepare import prepare
from overfitlab.report import final_accuracy, report
from overfitlab.train import train

pytestmark = pytest.mark.slow  # the whole pipeline


def test_messy_folder_through_prepare_train_collect_report(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    other = tmp_path / "other_microscope"
    for label, name in enumerate(("control", "treated")):
        save_image(other / name / "x.tif", field(label, 70).astype(np.uint16) * 200)
    overrides = image_folder_overrides(root, **{"+dataset.extra_test_sets.scope2": str(other)})
    meta = prepare(compose("prepare", overrides))
    assert meta["leakage"]["shared_contents"] == 0
    set_params(
        project, study={"datasets": ["cells"], "models": ["model_d"], "seeds": [0, 1]}, train={"epochs": 2}
    )
    for seed in (0, 1):
        train(
            compose("train", overrides[:2] + ["model=model_d", f"seed={seed}", "trainer.progress_bar=false"])
        )
    metrics = pd.read_csv(project / "runs/cells/model_d/seed=0/metrics.csv")
    assert list(metrics.columns[-2:]) == ["test_acc/scope2", "test_loss/scope2"] and len(metrics) == 2
    assert metrics["test_acc/scope2"].between(0, 1).all() and metrics["test_loss/scope2"].gt(0).all()
    # The extra set is a real evaluation: its accuracy is the fraction of its 24 tiles classified right.
    assert (metrics["test_acc/scope2"] * 24).round(6).mod(1).eq(0).all()

    collect()
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    assert "final_test_acc/scope2" in runs and runs["final_test_acc/scope2"].notna().all()
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    assert {"test_acc/scope2", "test_loss/scope2"} <= set(epochs.columns)
    summary = json.loads((project / "reports/metrics/summary.json").read_text())
    assert "test_acc/scope2_mean" in summary["cells"]["model_d"]
    curve = pd.read_csv(project / "reports/metrics/curves/cells__model_d.csv")
    assert "test_acc/scope2" in curve
    boxes = final_accuracy(runs)
    assert sorted(boxes.dataset.unique()) == ["cells", "cells | test@scope2"]
    assert np.allclose(
        boxes[boxes.dataset == "cells | test@scope2"].test_acc_pct, 100 * runs["final_test_acc/scope2"]
    )

    page = report().read_text()
    assert (project / "reports/figures/sample_tiles.png").stat().st_size > 1000
    assert "no tile content appears in two splits" in page
    for bad in IMAGE_FOLDER_BAD:
        assert bad in page
    assert "final test acc, scope2 (%)" in page
