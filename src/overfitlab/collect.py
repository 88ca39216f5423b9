"""Stage ``collect``: every complete, current run of the study -> the tables the report reads.

    python -m overfitlab.collect

It writes every file of ``reports_layout.OUTPUTS`` into reports/metrics/ (what each holds: that
module's docstring). Its jobs are in ``collection/``: which runs are complete and current
(``currency``), the per-run table, curves and summary (``summaries``), and the typical seed whose
predictions and feature maps the report shows (``median_seed``); the per-example tables are
``examples.py``'s.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd
import yaml

from . import axes, examples, reports_layout
from .collection.currency import expected_identities, read_metas, read_runs
from .collection.median_seed import copy_feature_maps, median_seed_predictions
from .collection.summaries import add_derived, class_counts, mean_curves, metrics_summary, summarize_runs
from .errors import exit_on_config_error
from .files import atomic_directory, atomic_write_json, atomic_write_parquet, atomic_write_text
from .study import load_study


def _csv(df: pd.DataFrame) -> str:
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


@exit_on_config_error
def collect(
    params_file: str = "params.yaml",
    runs_root: str = "runs",
    out_dir: str = reports_layout.METRICS,
    prepared_root: str = "data/prepared",
) -> pd.DataFrame:
    study = load_study(params_file)
    metas = read_metas(study, Path(prepared_root))
    params = yaml.safe_load(Path(params_file).read_text())
    expected = expected_identities(study, params, metas, Path(prepared_root))
    epochs, runs, diverged = read_runs(study, Path(runs_root), expected, metas, Path(prepared_root))
    epochs = add_derived(epochs).sort_values(["dataset", "model", "seed", "epoch"]).reset_index(drop=True)
    out = Path(out_dir)
    atomic_write_parquet(out / reports_layout.EPOCHS, epochs)
    atomic_write_text(out / reports_layout.EPOCHS_CSV, _csv(epochs))
    run_table = summarize_runs(epochs, runs)
    # runs.csv lists diverged runs too (status, diverged_epoch; no final metrics); nothing else has them.
    atomic_write_text(out / reports_layout.RUNS, _csv(pd.concat([run_table, diverged], ignore_index=True)))
    per_example = examples.collect_examples(run_table, Path(runs_root))
    atomic_write_parquet(out / reports_layout.EXAMPLES, per_example)
    atomic_write_parquet(out / reports_layout.EXAMPLE_CONSISTENCY, examples.consistency(per_example))
    atomic_write_json(
        out / reports_layout.SUMMARY, metrics_summary(run_table) | {"examples": examples.summary(per_example)}
    )
    atomic_write_json(out / reports_layout.AXES, {axes.column(k, study.axes): k for k in study.axes})
    atomic_write_parquet(
        out / reports_layout.PREDICTIONS, median_seed_predictions(run_table, Path(runs_root))
    )
    counts = class_counts(study, metas, Path(prepared_root))
    atomic_write_text(out / reports_layout.CLASS_COUNTS, _csv(counts))
    with atomic_directory(out / reports_layout.FEATURE_MAPS) as maps_dir:
        maps = copy_feature_maps(run_table, Path(runs_root), maps_dir)
    atomic_write_text(out / reports_layout.FEATURE_MAPS_INDEX, _csv(maps))
    curves = mean_curves(epochs)
    for (dataset, model), group in curves.groupby(["dataset", "model"]):
        curve = _csv(group.drop(columns=["dataset", "model"]))
        atomic_write_text(out / reports_layout.CURVES / f"{dataset}__{model}.csv", curve)
    note = f" ({len(diverged)} diverged run(s) listed, left out of the statistics)" if len(diverged) else ""
    stuck = run_table[run_table["at_chance"]]
    if len(stuck):
        names = ", ".join(f"{r.dataset} {r.model} seed={r.seed}" for r in stuck.itertuples())
        note += f"; {len(stuck)} run(s) never left chance (kept in the statistics): {names}"
    print(f"collected {len(run_table)} runs, {len(epochs)} epoch rows -> {out}/{note}", file=sys.stderr)
    return epochs


def main() -> None:
    collect()


if __name__ == "__main__":
    main()
