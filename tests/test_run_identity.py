"""Results that survive change (issue 29): a run is reused wherever its identity matches, a new
option at its declared default or a new measure retrains nothing, a part enters only the hash of
the runs that use it, a changed measure is never kept silently, and a code change a canary shows
bit-identical is accepted without retraining (``python -m overfitlab.accept``).

The end-to-end tests train a small study for real, then change the code in a copy of ``src/`` that
the commands import (``PYTHONPATH``), as a contributor's edit would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, compose, set_params
from overfitlab import identity as ident

PY = sys.executable
MLP = "fashion_mnist/mlp_300_100"


def run(*args: str, src: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """A project command as a user runs it, importing the package from ``src`` when given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)


def train_sweep(src: Path | None = None) -> subprocess.CompletedProcess:
    result = run(PY, "-m", "overfitlab.train", "-m", "trainer.progress_bar=false", src=src)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def trained(result: subprocess.CompletedProcess) -> int:
    """How many runs the sweep trained (one ✓ line each)."""
    return result.stderr.count("✓")


def done(project: Path, relative: str) -> dict:
    return json.loads((project / "runs" / relative / "done.json").read_text())


def copy_src(tmp_path: Path) -> Path:
    copy = tmp_path / "edited-src"
    shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture
def small_study(prepared, project):
    """The small study with one model, two seeds and two epochs, trained for real."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["study"]["models"] = ["mlp_300_100"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert trained(train_sweep()) == 2
    return project


# -- declared defaults and parts: the identity itself ------------------------------------------------


def test_an_option_at_its_declared_default_keeps_the_identity_it_had_before(project, monkeypatch):
    meta = {"data_version": "v"}
    before = ident.config_hash(ident.identity(compose("train", ["model=mlp_300_100"]), meta))
    # a new optimizer option with the value that reproduces today's behaviour (torch's default)
    optimizer = project / "conf/optimizer/adam.yaml"
    optimizer.write_text(optimizer.read_text() + "weight_decay: 0.0\n")
    assert ident.config_hash(ident.identity(compose("train", ["model=mlp_300_100"]), meta)) != before
    monkeypatch.setitem(ident.DECLARED_DEFAULTS, "optimizer.weight_decay", 0.0)  # its declaration
    assert ident.config_hash(ident.identity(compose("train", ["model=mlp_300_100"]), meta)) == before
    other = compose("train", ["model=mlp_300_100", "optimizer.weight_decay=0.0005"])
    assert ident.identity(other, meta)["optimizer"]["weight_decay"] == 0.0005
    assert ident.without_defaults({"a": {"b": False}}, {"a.b": 0}) == {"a": {"b": False}}  # kinds differ


def test_a_part_enters_only_the_hash_of_the_runs_that_use_it(tmp_path):
    src = copy_src(tmp_path)
    mlp = ("overfitlab.training.models.mlp",)
    before = ident.code_hash.__wrapped__(mlp, src)
    part = src / "overfitlab/training/smoothing.py"
    part.write_text("class Smoothing:\n    def __init__(self, amount):\n        self.amount = amount\n")
    config = {
        "net": {"_target_": "overfitlab.training.models.mlp.MLP"},
        "reg": {"_target_": "overfitlab.training.smoothing.Smoothing"},
    }
    uses = tuple(ident.part_modules(config))
    assert uses == ("overfitlab.training.models.mlp", "overfitlab.training.smoothing")
    with_part = ident.code_hash.__wrapped__(uses, src)
    assert ident.code_hash.__wrapped__(mlp, src) == before != with_part  # runs without it: unchanged
    part.write_text(part.read_text() + "\n\nSCALE = 2\n")
    assert ident.code_hash.__wrapped__(mlp, src) == before
    assert ident.code_hash.__wrapped__(uses, src) != with_part


def add_measure(src: Path, column: str) -> None:
    """A new measure in the copy ``src``, as a contributor adds one: its module (a constant column)
    and its line in the registry (CONTRIBUTING: "Add a metric")."""
    (src / "overfitlab/measures/margin.py").write_text(
        "class Margin:\n    def __init__(self, **_):\n        pass\n\n"
        f"    def close(self, totals, row):\n        row['{column}'] = 0.5\n"
    )
    registry = src / "overfitlab/measures/__init__.py"
    replace(registry, "from .per_example", "from .margin import Margin\nfrom .per_example")
    replace(
        registry,
        '    "weights_digest": WeightsDigest,\n',
        '    "weights_digest": WeightsDigest,\n    "margin": Margin,\n',
    )


def fingerprints(src: Path) -> dict:
    code = "import json; from overfitlab.measures import fingerprints; print(json.dumps(fingerprints()))"
    result = run(PY, "-c", code, src=src)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_measures_are_outside_the_code_hash_each_with_its_own_fingerprint(tmp_path):
    src = copy_src(tmp_path)
    mlp = ("overfitlab.training.models.mlp",)
    code, before = ident.code_hash.__wrapped__(mlp, src), fingerprints(src)
    add_measure(src, "margin")  # a new measure: its module and its line in the registry
    added = fingerprints(src)
    assert {k: v for k, v in added.items() if k != "margin"} == before and "margin" in added
    # a changed measure: its fingerprint alone changes
    replace(src / "overfitlab/measures/calibration.py", "CONFIDENT = 0.9", "CONFIDENT = 0.8")
    changed = fingerprints(src)
    assert [k for k in before if changed[k] != before[k]] == ["calibration"]
    assert ident.code_hash.__wrapped__(mlp, src) == code  # and no run's code hash moved


# -- end to end: reuse, new and changed measures, accept ---------------------------------------------


@pytest.mark.slow
def test_a_new_axis_trains_only_its_new_runs_and_moves_the_others(small_study):
    project = small_study
    before = (project / "runs" / MLP / "seed=0/metrics.csv").read_text()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["study"]["axes"] = {"train.batch_size": [32, 128]}  # 32 is the trained runs' value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = train_sweep()
    assert trained(result) == 2, result.stderr[-2000:]  # only batch_size=128
    assert result.stderr.count("moved from") == 2
    moved = done(project, f"{MLP}/batch_size=32/seed=0")
    assert moved["moved_from"] == [f"{MLP}/seed=0"] and moved["axes"] == {"train.batch_size": 32}
    assert (project / "runs" / MLP / "batch_size=32/seed=0/metrics.csv").read_text() == before
    assert not (project / "runs" / MLP / "seed=0").exists()
    assert done(project, f"{MLP}/batch_size=128/seed=1")["axes"] == {"train.batch_size": 128}
    assert trained(train_sweep()) == 0  # and again: everything current where it lies
    collected = run(PY, "-m", "overfitlab.collect")
    assert collected.returncode == 0, collected.stderr


@pytest.mark.slow
def test_a_new_measure_retrains_nothing_and_a_changed_one_is_never_kept(small_study, tmp_path):
    project, src = small_study, copy_src(tmp_path)
    add_measure(src, "test_margin")
    assert trained(train_sweep(src)) == 0  # a new measure: every run stays
    collected = run(PY, "-m", "overfitlab.collect", src=src)
    assert collected.returncode == 0, collected.stderr
    assert "2 run(s) were trained before the measure 'margin' existed" in collected.stderr
    # a changed measure: the runs that recorded it are stale, for collect and for the train stage
    replace(src / "overfitlab/measures/calibration.py", "CONFIDENT = 0.9", "CONFIDENT = 0.8")
    refused = run(PY, "-m", "overfitlab.collect", src=src)
    assert refused.returncode == 2 and "measure(s) calibration changed" in refused.stderr, refused.stderr
    assert trained(train_sweep(src)) == 2
    assert "test_margin" in (project / "runs" / MLP / "seed=0/metrics.csv").read_text()


@pytest.mark.slow
def test_accept_re_stamps_a_bit_identical_refactor_and_refuses_a_change_of_numbers(small_study, tmp_path):
    project = small_study
    hashes = {s: done(project, f"{MLP}/seed={s}")["config_hash"] for s in (0, 1)}
    # a refactor: a local variable of the training step renamed (the code hash changes)
    refactor = copy_src(tmp_path / "refactor")
    step = refactor / "overfitlab/training/module.py"
    text = step.read_text()
    head, body = text.split("class SeedStack", 1)  # the one-run step's local variable only
    assert head.count("logits_seen") == 3
    step.write_text(head.replace("logits_seen", "seen") + "class SeedStack" + body)
    dry = run(PY, "-m", "overfitlab.accept", "--dry-run", src=refactor)
    assert dry.returncode == 0 and "2 run(s) differ only in code" in dry.stderr, dry.stderr
    accepted = run(PY, "-m", "overfitlab.accept", src=refactor)
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "2 run(s) accepted" in accepted.stderr and "weights digests" in accepted.stderr
    record = done(project, f"{MLP}/seed=1")
    assert record["config_hash"] != hashes[1] and record["accepted"][0]["from_config_hash"] == hashes[1]
    assert record["accepted"][0]["canary"] == "seed=0" and record["accepted"][0]["epochs"] == 2
    assert trained(train_sweep(refactor)) == 0  # nothing retrains under the accepted code
    # a change of numbers: the training loss scaled by 1.001 (Adam barely notices: the metrics do)
    moved = copy_src(tmp_path / "moved")
    replace(
        moved / "overfitlab/training/module.py",
        "self._per_example_loss(logits, y).mean()",
        "self._per_example_loss(logits, y).mean() * 1.001",
    )
    refused = run(PY, "-m", "overfitlab.accept", src=moved)
    assert refused.returncode == 1 and "differs" in refused.stderr and "not accepted" in refused.stderr, (
        refused.stderr
    )
    assert done(project, f"{MLP}/seed=1")["config_hash"] == record["config_hash"]  # nothing re-stamped
    # a change of settings is never a code change
    set_params(project, train={"lr": 0.002})
    settings = run(PY, "-m", "overfitlab.accept", "--dry-run", src=refactor)
    assert "not a code change (optimizer.lr: 0.001 -> 0.002)" in settings.stderr, settings.stderr
