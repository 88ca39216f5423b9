"""Stage ``report``: collect's tables -> seaborn figures and a self-contained ``reports/index.html``.

    python -m overfitlab.report

The work is in ``overfitlab.analysis``: ``inputs`` (``ReportInputs``, collect's outputs read
once), ``tables`` (the numbers, which the tests check), ``registry`` (``@figure``), one module per
page section with its figures (``question``, ``double_descent``, ``comparison`` and
``regularization``, ``variant``, ``memorization``, ``inside``), ``panels`` (how a figure fits the
page), ``rendering`` (the figures as PNG, in page order: ``PAGE``), ``page`` +
``templates/report.html.j2`` (the HTML).

Adding a figure: write one function in the module of its page section that takes the
``ReportInputs`` and returns a matplotlib figure, decorated with that section's ``@figure``
(``when=`` only if the figure does not apply to every study), its docstring the caption; if its
numbers deserve a test, compute them in a function of ``analysis/tables.py``. That is all: the
stage draws every registered figure, writes ``reports/figures/<name>.png`` and puts it, with its
caption, into the page. A figure that needs a new output of collect touches collect.py and
``reports_layout.OUTPUTS`` too (it reads the file as ``inputs.files[<name>]``;
``python -m overfitlab.pipeline`` then adds it to every dvc.yaml).

The stage also gives the study's sweep run in MLflow its aggregate (``tracking.aggregate``):
per model and dataset variant the per-epoch mean and 95 % interval of the accuracies and losses as
``agg/...`` step metrics, the summary table and this report as artifacts. No store, experiment or
sweep run there, or MLflow unreachable: one warning line, the report stands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from . import reports_layout
from .analysis.double_descent import applies as has_width_axis
from .analysis.double_descent import summary as double_descent_summary
from .analysis.inputs import ReportInputs
from .analysis.page import render_html
from .analysis.regularization import applies as has_regularizer_axis
from .analysis.regularization import regularization_table
from .analysis.rendering import render
from .analysis.stats import pairwise
from .analysis.tables import (
    axis_table,
    final_accuracy,
    null_named,
    per_class_scores,
    study_curves,
    summary_table,
)
from .errors import exit_on_config_error
from .files import atomic_directory, atomic_write_bytes, atomic_write_text

__all__ = ["final_accuracy", "report"]  # final_accuracy: the box plot's numbers, for the tests


@exit_on_config_error
def report(
    metrics_dir: str = reports_layout.METRICS,
    out_dir: str = reports_layout.REPORTS,
    prepared_root: str = "data/prepared",
) -> Path:
    inputs = ReportInputs.load(Path(metrics_dir), Path(prepared_root))
    out = Path(out_dir)
    figures = render(inputs)
    with atomic_directory(
        out / reports_layout.FIGURES
    ) as figures_dir:  # fresh: no figure of an earlier report stays
        for fig in figures:
            atomic_write_bytes(figures_dir / f"{fig.name}.png", fig.png)
        tables = _tables(inputs)
        for name, (table, float_format) in tables.items():
            atomic_write_text(
                figures_dir / f"{name}.csv", table.to_csv(index=False, float_format=float_format)
            )
    axis_tables = {
        name.removeprefix("against_"): t for name, (t, _) in tables.items() if name.startswith("against_")
    }
    page = render_html(
        inputs,
        figures,
        tables["summary"][0],
        tables["comparisons"][0],
        tables["per_class_scores"][0],
        axis_tables,
    )
    atomic_write_text(out / reports_layout.PAGE, page)
    print(f"report: {out / reports_layout.PAGE} ({len(figures)} figures)", file=sys.stderr)
    log_to_mlflow(inputs, out)
    return out / reports_layout.PAGE


def group_tags(inputs: ReportInputs) -> list[str]:
    """The child runs' tags that tell the study's variants apart, for MLflow's Group by: ``model``,
    each varying axis (``axis.<config key>``) and, with several datasets, ``dataset``."""
    runs = inputs.runs
    tags = ["model"]
    if "source_dataset" in runs and runs["source_dataset"].nunique() > 1:
        tags.append("dataset")
    return tags + [f"axis.{inputs.axes[column]}" for column in inputs.varying_axes]


def log_to_mlflow(inputs: ReportInputs, out: Path, params_file: str = "params.yaml") -> str | None:
    """The study's aggregate into its sweep run in MLflow (the experiment of params.yaml's
    ``study.name``); the sweep run's id, or None with one warning line saying why not."""
    from .tracking.aggregate import TrackingUnavailable, log_study_aggregate

    try:
        study = (yaml.safe_load(Path(params_file).read_text()) or {}).get("study", {}).get("name")
        if not study:
            raise TrackingUnavailable(f"{params_file} has no study.name")
        run_ids = (
            inputs.runs["mlflow_run_id"].dropna().astype(str).tolist()
            if "mlflow_run_id" in inputs.runs
            else []
        )
        figures, page = out / reports_layout.FIGURES, out / reports_layout.PAGE
        artifacts = {
            "summary.csv": figures / "summary.csv",
            "report/index.html": page,
            "report/figures": figures,
        }
        run_id = log_study_aggregate(
            str(study), study_curves(inputs.epochs), run_ids, artifacts, group_by=group_tags(inputs)
        )
    except Exception as error:  # MLflow's, the store's or the network's: the report is written anyway
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"warning: MLflow: study aggregate not logged: {message}", file=sys.stderr)
        return None
    print(f"report: study aggregate logged to MLflow run {run_id} (metrics agg/...)", file=sys.stderr)
    return run_id


def _tables(inputs: ReportInputs) -> dict[str, tuple]:
    """The report's tables (``reports/figures/<name>.csv``) with their CSV float format."""
    others = {axis: [a for a in inputs.varying_axes if a != axis] for axis in inputs.varying_axes}
    named = null_named(inputs.runs, inputs.varying_axes)
    study_specific = {
        **({"double_descent": (double_descent_summary(inputs), "%.4f")} if has_width_axis(inputs) else {}),
        **(
            {"regularization": (regularization_table(inputs.runs, inputs.axes), "%.4f")}
            if has_regularizer_axis(inputs)
            else {}
        ),
    }
    return {
        **study_specific,
        "summary": (summary_table(inputs.runs, inputs.n_test), "%.4f"),
        "comparisons": (pairwise(final_accuracy(inputs.runs)), "%.6g"),
        "per_class_scores": (per_class_scores(inputs.predictions), "%.6g"),
        **{
            f"against_{a}": (axis_table(named, a, others[a], inputs.n_test), "%.4f")
            for a in inputs.varying_axes
        },
    }


def main() -> None:
    report()


if __name__ == "__main__":
    main()
