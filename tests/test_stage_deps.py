"""Every study's dvc.yaml is the one generated from src/overfitlab/pipeline/, and its stages depend
on the code they run.

A module a stage imports (at the top or lazily inside a function, transitively) or that its Hydra
configs instantiate (``_target_: overfitlab...``) but that is missing from the stage's deps would
let `dvc repro` keep stale outputs after a change to it. The deps are generated from the same
import scan (``overfitlab.imports``); the check below reads them back from dvc.yaml, so a stale
dvc.yaml (an import added without rerunning `python -m overfitlab.pipeline`) fails it too.
"""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from conftest import ROOT
from overfitlab import pipeline
from overfitlab.imports import PACKAGE, closure

DATASETS = sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml"))


def stages() -> dict[str, dict]:
    text = (ROOT / "dvc.yaml").read_text().replace("${project}", ".")
    return yaml.safe_load(text)["stages"]


def covered(path, deps) -> bool:
    return any(path == d or d in path.parents for d in deps)


def test_every_stage_depends_on_the_code_it_runs():
    checked = set()
    for name, stage in stages().items():
        stage = stage.get("do", stage)
        match = re.match(r"python -m (overfitlab[\w.]*)", stage["cmd"])
        if not match:
            continue
        for item in DATASETS if "${item}" in str(stage["deps"]) else ["-"]:  # each of a foreach's items
            deps = [ROOT / d.replace("${item}", item) for d in stage["deps"]]
            needed = set(closure([match.group(1)]))
            if any("instantiate(" in f.read_text() for f in needed):  # its configs name code it runs
                targets = pipeline.deps.config_targets([d for d in deps if "conf" in d.parts])
                needed |= set(closure(sorted(targets)))
            missing = sorted(str(p.relative_to(ROOT)) for p in needed if not covered(p, deps))
            assert not missing, f"dvc.yaml stage {name} ({item}) runs but does not depend on: {missing}"
        checked.add(name)
    assert checked == {"prepare", "train", "collect", "report"}


def test_every_code_dep_exists():
    for name, stage in stages().items():
        deps = stage.get("do", stage)["deps"]
        absent = [d for d in deps if d.startswith("./src/") and not (ROOT / d).exists()]
        assert not absent, f"dvc.yaml stage {name} depends on missing {absent}"


def test_the_import_scan_finds_lazy_and_relative_imports():
    """The check above can fail: the train stage's closure has its lazy and relative imports."""
    needed = {str(p.relative_to(PACKAGE)) for p in closure(["overfitlab.train"])}
    assert {
        "train.py",
        "runs.py",
        "tracking/run_logger.py",
        "training/fitting.py",
        "training/module.py",
        "__init__.py",
        "data/controls.py",
    } <= needed
    assert "report.py" not in needed


def test_an_mlflow_ui_edit_leaves_train_and_collect_current():
    """The tracking package re-exports nothing: the stages that log runs depend on the store, not
    on the UI view or the aggregate, which only the report stage logs."""
    view = PACKAGE / "tracking" / "ui_view.py"
    for stage in ("train", "collect"):
        deps = [ROOT / d for d in pipeline.code_deps(stage)]
        assert covered(PACKAGE / "tracking" / "store.py", deps), stage
        assert not covered(view, deps) and not covered(PACKAGE / "tracking" / "aggregate.py", deps), stage
    assert covered(view, [ROOT / d for d in pipeline.code_deps("report")])


def test_the_pipeline_template_is_no_stage_dep():
    """The template is package data of overfitlab.pipeline, which no stage imports: an edit of it
    reruns no stage by itself, only what it changes in the generated dvc.yaml files."""
    template = PACKAGE / "pipeline" / "dvc.template.yaml"
    assert template.is_file()
    for stage in pipeline.CODE:
        assert not covered(template, [ROOT / d for d in pipeline.code_deps(stage)]), stage


def test_config_targets_name_the_modules_the_configs_instantiate():
    targets = pipeline.deps.config_targets([ROOT / "conf" / "model", ROOT / "conf" / "optimizer"])
    assert targets and all(
        t.startswith("overfitlab.training.models") for t in targets
    )  # torch.optim left out
    assert "overfitlab.data.demo_textures" in pipeline.deps.config_targets([ROOT / "conf" / "dataset"])
    launchers = pipeline.deps.config_targets([ROOT / "conf" / "hydra" / "launcher"])
    assert launchers == {"hydra_plugins.overfitlab_launchers.submitit_jobs"}


def test_generated_deps_cover_package_data_and_plugins():
    """The report's page template is read, not imported; the train stage runs the launcher plugin."""
    report = [ROOT / d for d in pipeline.code_deps("report")]
    assert covered(PACKAGE / "analysis" / "templates" / "report.html.j2", report)
    train = [ROOT / d for d in pipeline.code_deps("train")]
    assert covered(ROOT / "src" / "hydra_plugins" / "overfitlab_launchers" / "submitit_jobs.py", train)
    assert pipeline.code_deps("train") == sorted(pipeline.code_deps("train"))


def test_every_study_has_the_generated_pipeline():
    """`python -m overfitlab.pipeline --check`: every dvc.yaml is the template's (else: rerun it)."""
    result = subprocess.run(
        [sys.executable, "-m", "overfitlab.pipeline", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    managed = set(pipeline.expected())
    assert {p.parent / "dvc.yaml" for p in (ROOT / "studies").rglob("params.yaml")} <= managed
    assert set((ROOT / "studies").rglob("dvc.yaml")) <= managed, "a dvc.yaml beside no params.yaml"
    assert len(managed) >= 6  # the root, randomization, textures and the three sources studies


def test_generate_check_and_new_study(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert pipeline.main(["--check"], root=tmp_path) == 1
    assert capsys.readouterr().err.strip() == (
        "not generated from the current template and imports: dvc.yaml; run `python -m overfitlab.pipeline`"
    )
    assert pipeline.main([], root=tmp_path) == 0
    generated = (tmp_path / "dvc.yaml").read_text()
    assert generated.startswith("# generated by `python -m overfitlab.pipeline`")
    assert yaml.safe_load(generated)["vars"] == [{"project": "."}]

    study = tmp_path / "studies" / "mine"
    assert pipeline.main(["new", str(study)], root=tmp_path) == 0
    assert (study / "dvc.yaml").read_text() == pipeline.render("../..")
    params, root_params = (
        yaml.safe_load(p.read_text()) for p in (study / "params.yaml", ROOT / "params.yaml")
    )
    assert params["study"].pop("name") == "mine" and root_params["study"].pop("name") != "mine"
    assert params == root_params
    assert "# MLflow experiment name" in (study / "params.yaml").read_text()  # comments kept
    capsys.readouterr()
    assert pipeline.main(["--check"], root=tmp_path) == 0
    assert pipeline.main([], root=tmp_path) == 0 and capsys.readouterr().out.strip() == (
        "every dvc.yaml is up to date"
    )

    (study / "params.yaml").write_text("study: {name: edited}\n")
    assert pipeline.main(["new", str(study)], root=tmp_path) == 2  # never overwrites a study
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "exists" in err and "\n" not in err
    assert (study / "params.yaml").read_text() == "study: {name: edited}\n"
    assert pipeline.main(["new", str(tmp_path / "elsewhere")], root=tmp_path) == 2
    assert "studies/<name>" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()

    nested = tmp_path / "studies" / "sources" / "other"
    assert pipeline.main(["new", str(nested)], root=tmp_path) == 0
    assert yaml.safe_load((nested / "dvc.yaml").read_text())["vars"] == [{"project": "../../.."}]
    assert yaml.safe_load((nested / "params.yaml").read_text())["study"]["name"] == "sources-other"
