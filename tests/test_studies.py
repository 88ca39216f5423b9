"""Studies beyond the default one: a directory with its own params.yaml and dvc.yaml.

Every study's dvc.yaml is generated from one template (tests/test_stage_deps.py checks it); here:
each study's params.yaml, and a small label-noise study run with the real `dvc repro` from the
repository root.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, SMALL_STUDY, run_cli
from overfitlab import pipeline

DVC = str(Path(sys.executable).parent / "dvc")


@pytest.mark.parametrize(
    "study_params",
    [study / "params.yaml" for study in pipeline.studies()[1:]],
    ids=lambda p: str(p.parent.relative_to(ROOT / "studies")),
)
def test_every_study_has_the_sections_the_pipeline_reads(study_params):
    params = yaml.safe_load(study_params.read_text())
    assert {"study", "prepare", "train"} <= set(params)


@pytest.mark.slow
def test_a_label_noise_study_in_its_own_directory(project):
    study_dir = project / "studies" / "tiny"
    study_dir.mkdir(parents=True)
    (study_dir / "dvc.yaml").write_text(pipeline.render("../.."))
    params = json.loads(json.dumps(SMALL_STUDY))
    params["study"].update(
        name="tiny-noise", models=["mlp_300_100", "model_d"], axes={"train.label_noise": [0.0, 1.0]}
    )
    (study_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(args, cwd=project, check=True, capture_output=True)

    result = run_cli(DVC, "repro", "studies/tiny/dvc.yaml", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Everything the study writes stays in its directory, except the shared MLflow store.
    assert not (project / "runs").exists() and not (study_dir / "mlflow.db").exists()
    for p in (0.0, 1.0):
        for model in ("mlp_300_100", "model_d"):
            assert (study_dir / "runs/fashion_mnist" / model / f"label_noise={p}/seed=1/done.json").exists()
    runs = pd.read_csv(study_dir / "reports/metrics/runs.csv")
    assert len(runs) == 2 * 2 * 2 and sorted(runs.label_noise.unique()) == [0.0, 1.0]
    noise = pd.read_csv(study_dir / "reports/figures/against_label_noise.csv")
    assert sorted(zip(noise.model, noise.label_noise)) == [
        ("mlp_300_100", 0.0),
        ("mlp_300_100", 1.0),
        ("model_d", 0.0),
        ("model_d", 1.0),
    ]
    # Real labels are learnable, random ones are not: test accuracy at p = 1 is far below p = 0.
    acc = noise.set_index(["model", "label_noise"]).test_acc_mean
    assert acc[("mlp_300_100", 0.0)] > acc[("mlp_300_100", 1.0)] + 20
    figures = study_dir / "reports/figures"
    assert (figures / "against_axis__label_noise.png").exists() and (
        figures / "clean_vs_corrupted.png"
    ).exists()
    # Conv feature maps of the median seed: model_d has one convolution, the MLP none.
    maps = sorted(p.name for p in (study_dir / "reports/metrics/feature_maps").iterdir())
    assert len(maps) == 1 and maps[0].startswith("fashion_mnist+label_noise=0.0__model_d__seed=")
    assert any(
        p.name.startswith("feature_maps__fashion_mnist+label_noise=0.0__model_d") for p in figures.iterdir()
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-noise")
    children = [
        r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]
    assert len(children) == 8 and {r.data.tags["dataset"] for r in children} == {"fashion_mnist"}
    assert {r.data.tags["axis.train.label_noise"] for r in children} == {"0.0", "1.0"}  # the axis, per run
