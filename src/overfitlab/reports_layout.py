"""The reports layout: the files ``collect`` writes into reports/metrics/ and the report's own.

One home for the names that collect writes, the report reads (``analysis/inputs.py``) and the
generated ``dvc.yaml`` lists as collect's outs and the report's deps (``pipeline``): a new output
of collect is one entry of ``OUTPUTS``. In ``reports/metrics/``:

* ``epochs.parquet`` / ``epochs.csv``: one row per run x epoch (dataset, model, seed, epoch,
  train_loss, train_acc, val_loss, val_acc, test_loss, test_acc, gap_acc, gap_loss, ...;
  ``test_acc/<name>``, ``test_loss/<name>`` for the extra test sets of image-folder datasets);
* ``runs.csv``: one row per run (final metrics, the epoch chosen on validation and its test
  accuracy, the test-chosen oracle, time to fit, parameters, provenance);
* ``summary.json``: DVC metrics, mean and sd of the final accuracies per dataset (variant) and
  model, and the per-example summary per model (``examples``);
* ``axes.json``: the study's axes, ``{column: config key}`` (one column per axis in the tables);
* ``curves/<dataset>__<model>.csv``: mean curves over seeds, declared as ``dvc plots``;
* ``predictions.parquet``: final test predictions of the median seed of each (dataset, model);
* ``class_counts.csv``: examples per class and split of each prepared dataset (class balance);
* ``examples.parquet``: one row per run x training example (learned epoch, forgetting events, ...)
  and ``example_consistency.parquet``: one row per (dataset, model) x example, across seeds;
* ``feature_maps/*.npz`` + ``feature_maps.csv``: the median seed's conv feature maps of one test
  image; the csv says whose each file is (dataset, model, seed, file), so no reader parses names.

The report writes ``reports/figures/`` (each figure's PNG and each table's CSV) and
``reports/index.html``. Imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

REPORTS = "reports"  # every path below is under it, relative to the study's directory
METRICS = f"{REPORTS}/metrics"  # collect's outputs
FIGURES = "figures"  # the report's figures and tables, under REPORTS
PAGE = "index.html"  # the report's page, under REPORTS

EPOCHS = "epochs.parquet"
EPOCHS_CSV = "epochs.csv"
RUNS = "runs.csv"
SUMMARY = "summary.json"
AXES = "axes.json"
CURVES = "curves"
PREDICTIONS = "predictions.parquet"
CLASS_COUNTS = "class_counts.csv"
FEATURE_MAPS_INDEX = "feature_maps.csv"
FEATURE_MAPS = "feature_maps"
EXAMPLES = "examples.parquet"
EXAMPLE_CONSISTENCY = "example_consistency.parquet"


@dataclass(frozen=True)
class Output:
    """A file (or directory) of ``METRICS`` as the pipeline declares it."""

    name: str
    report: bool = True  # the report reads it: a dep of the report stage
    committed: bool = False  # in git, not DVC's cache (``cache: false``): a clone has it untrained
    note: str = ""  # said beside ``cache: false`` in dvc.yaml
    metric: bool = False  # declared as DVC metrics (``dvc metrics show``), not outs


# In dvc.yaml's order: collect's outs, then its metrics; the report's deps are those it reads.
OUTPUTS = (
    Output(EPOCHS),
    Output(EPOCHS_CSV, report=False),
    Output(
        RUNS, committed=True, note="committed (one row per run): a clone checks the docs' numbers untrained"
    ),
    Output(CURVES, report=False),
    Output(PREDICTIONS),
    Output(CLASS_COUNTS),
    Output(FEATURE_MAPS_INDEX),
    Output(FEATURE_MAPS),
    Output(AXES, committed=True),
    Output(EXAMPLES),
    Output(EXAMPLE_CONSISTENCY),
    Output(SUMMARY, report=False, committed=True, metric=True),
)

REPORT_INPUTS = tuple(o.name for o in OUTPUTS if o.report)


def metrics_path(name: str) -> str:
    """``reports/metrics/<name>``: where collect writes ``name``, relative to the study."""
    return f"{METRICS}/{name}"
