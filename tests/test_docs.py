"""Stated results are generated from committed files (``python -m overfitlab.docs``): the README and
docs/ agree with the committed results, and a result that changes without its text fails."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

from conftest import ROOT, run_cli

COMMITTED = [
    "README.md",
    "docs",
    "conf/train.yaml",
    "studies/regularization/reports/metrics",
    "studies/sources/microscopy-alexnet/reports/metrics/summary.json",
    "studies/sources/microscopy-alexnet-l2/reports/metrics/summary.json",
]


def test_every_generated_block_matches_the_committed_results():
    result = run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = (ROOT / "README.md").read_text()
    assert "<!-- generated: regularization-claims -->\n| claim" in text  # the blocks are filled in


def copy_of_the_docs(tmp_path: Path) -> Path:
    for item in COMMITTED:
        source, target = ROOT / item, tmp_path / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("*.parquet", "curves", "feature_maps")
            )
        else:
            shutil.copy(source, target)
    return tmp_path


def test_a_changed_result_without_its_text_fails_the_check(tmp_path):
    root = copy_of_the_docs(tmp_path)
    assert run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=root).returncode == 0
    summary = root / "studies/sources/microscopy-alexnet-l2/reports/metrics/summary.json"
    text = summary.read_text()
    value = text.split('"test_acc_mean": ')[1].split(",")[0]
    summary.write_text(text.replace(f'"test_acc_mean": {value}', f'"test_acc_mean": {float(value) - 0.05}'))
    stale = run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=root)
    assert stale.returncode == 1 and "README.md: alexnet-l2" in stale.stderr, stale.stderr
    runs = root / "studies/regularization/reports/metrics/runs.csv"
    table = pd.read_csv(runs)
    table.loc[0, "final_test_acc"] -= 0.1  # one seed's test accuracy, 10 points lower
    table.to_csv(runs, index=False)
    stale = run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=root)
    assert "docs/regularization.md: regularization-table" in stale.stderr, stale.stderr
    fixed = run_cli(sys.executable, "-m", "overfitlab.docs", cwd=root)
    assert fixed.returncode == 0, fixed.stderr
    assert run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=root).returncode == 0
