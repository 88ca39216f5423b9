"""The report page: tables formatted for reading, filled into templates/report.html.j2 (Jinja2).

The page is one self-contained file: figures are embedded as base64 PNGs.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from .inputs import ReportInputs
from .registry import SECTIONS
from .rendering import Rendered

TEMPLATES = Path(__file__).with_name("templates")

ORACLE = "oracle: max over epochs of test acc (%) — chosen on the test set, optimistic"


def _html(df: pd.DataFrame, index: bool = False, sortable: bool = False, **kwargs) -> str:
    """A pandas table as HTML; ``sortable`` ones sort by a click on a column head (the page's script)."""
    return df.to_html(index=index, border=0, classes="table sortable" if sortable else "table", **kwargs)


def _three(value: float) -> str:
    return f"{value:.3f}"


def _fmt(values: pd.Series, spec: str) -> pd.Series:
    return values.map(spec.format)


NO_VALIDATION = "no validation split"  # prepare.val_size: 0: nothing is chosen on validation


def summary_html(df: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "dataset": df["dataset"],
            "model": df["model"],
            "parameters": _fmt(df["params"], "{:,}"),
            "seeds": df["seeds"],
            "final test acc (%)": [
                f"{m:.2f}" if pd.isna(s) else f"{m:.2f} ± {s:.2f}"
                for m, s in zip(df["test_acc_mean"], df["test_acc_sd"], strict=True)
            ],
            "95 % CI of mean": [
                "n < 2" if pd.isna(lo) else f"{lo:.2f} – {hi:.2f}"
                for lo, hi in zip(df["test_acc_ci_low"], df["test_acc_ci_high"], strict=True)
            ],
            "final train acc (%)": _fmt(df["train_acc_mean"], "{:.2f}"),
            "gap (points)": _fmt(df["gap_mean"], "{:.2f}"),
            "best-val epoch (median)": _fmt(df["best_val_epoch_median"], "{:g}").where(
                df["best_val_epoch_median"].notna(), NO_VALIDATION
            ),
            "test acc at best-val epoch (%)": _fmt(df["test_acc_at_best_val_mean"], "{:.2f}").where(
                df["test_acc_at_best_val_mean"].notna(), NO_VALIDATION
            ),
            "epochs to fit 99 % (median; seeds that did)": [
                f"{e:g} ({n})" if n else "never (0)"
                for e, n in zip(df["fit_epoch_median"], df["seeds_fitted"], strict=True)
            ],
            "seeds that never left chance": df["seeds_at_chance"],
            "confidently wrong (%)": _fmt(df["conf_wrong_mean"], "{:.2f}"),
            "ECE": _fmt(df["ece_mean"], "{:.3f}"),
            **{
                f"final test acc, {c.split('/', 1)[1]} (%)": _fmt(df[c], "{:.2f}")
                for c in df.columns
                if c.startswith("test_acc_mean/")
            },  # extra test sets
            ORACLE: _fmt(df["oracle_best_test_acc_mean"], "{:.2f}"),
        }
    )
    return _html(shown, sortable=True)


def tests_html(df: pd.DataFrame) -> str | None:
    if df.empty:
        return None
    shown = df.assign(
        **{
            "median A (%)": _fmt(df["median_a"], "{:.2f}"),
            "median B (%)": _fmt(df["median_b"], "{:.2f}"),
            "p (exact)": [
                f"{p:.3g}" if m == "exact" else f"{p:.3g} ({m})"
                for p, m in zip(df["p"], df["p_method"], strict=True)
            ],
            "Cliff's δ": _fmt(df["cliffs_delta"], "{:+.2f}"),
            "P(A > B)": [
                f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
                for v, lo, hi in zip(
                    df["prob_improvement"],
                    df["prob_improvement_low"],
                    df["prob_improvement_high"],
                    strict=True,
                )
            ],
        }
    )
    cols = [
        "dataset",
        "a",
        "b",
        "n_a",
        "n_b",
        "median A (%)",
        "median B (%)",
        "U",
        "p (exact)",
        "Cliff's δ",
        "P(A > B)",
        "note",
    ]
    return _html(shown[cols].rename(columns={"a": "A", "b": "B"}), sortable=True)


AXIS_COLUMNS = {
    "test_acc_mean": "test acc (%)",
    "test_acc_ci_low": "95 % CI low",
    "test_acc_ci_high": "95 % CI high",
    "train_acc_mean": "train acc (%)",
    "gap_mean": "gap (points)",
    "train_clean_acc_mean": "train acc, kept labels (%)",
    "train_corrupted_acc_mean": "train acc, changed labels (%)",
    "fit_epoch_median": "epochs to fit 99 % (median)",
    "seeds_fitted": "seeds fitted",
}


def axis_html(tables: dict[str, pd.DataFrame], figures: list[Rendered]) -> list[dict]:
    """One section per varying axis, right after the summary: its figure (``against_axis``) and the
    final numbers per value (``tables.axis_table``); axis values shown as written, not rounded."""
    shown = []
    for axis, df in tables.items():
        if df["train_corrupted_acc_mean"].isna().all():
            df = df.drop(columns=["train_clean_acc_mean", "train_corrupted_acc_mean"])
        axes = [
            c
            for c in df.columns
            if c not in AXIS_COLUMNS and c not in ("dataset", "model", "seeds", "epochs")
        ]
        df = df.astype({c: str for c in axes})
        html = _html(
            df.rename(columns=AXIS_COLUMNS), sortable=True, float_format=lambda v: f"{v:.2f}", na_rep="–"
        )
        drawn = [_figure(f) for f in figures if f.section == "question" and f.key == axis]
        shown.append({"axis": axis, "html": html, "figures": drawn})
    return shown


def image_folder_sections(metas: dict[str, dict]) -> list[dict]:
    """What prepare did to each image folder: files skipped and why, background dropped, leakage check."""
    sections = []
    for dataset, meta in metas.items():
        skipped = pd.DataFrame(meta["skipped"], columns=["file", "reason"])
        unreadable = skipped[~skipped["reason"].str.startswith("ignored")]
        sections.append(
            {
                "dataset": dataset,
                "meta": meta,
                "leak": meta["leakage"],
                "unreadable": len(unreadable),
                "ignored": len(skipped) - len(unreadable),
                "unreadable_html": _html(unreadable) if len(unreadable) else "",
            }
        )
    return sections


PROVENANCE = [
    "dataset",
    "model",
    "seed",
    "run_dir",
    "final_test_acc",
    "final_train_acc",
    "best_val_epoch",
    "test_acc_at_best_val",
    "wall_time_s",
    "device",
    "git_commit",
    "data_version",
    "config_hash",
    "cpu_model",
    "mlflow_run_id",
]


AT_CHANCE = ["dataset", "model", "seed", "final_train_acc", "final_test_acc", "epochs", "config_hash"]


def _at_chance(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose final training accuracy stayed at chance (collect's ``at_chance``)."""
    return runs[runs["at_chance"].fillna(False).astype(bool)] if "at_chance" in runs else runs.iloc[:0]


DIVERGED = ["dataset", "model", "seed", "diverged_epoch", "epochs", "device", "config_hash", "mlflow_run_id"]


PER_VARIANT = ("variant", "memorization")  # sections with one collapsible group per dataset variant


def figure_sections(figures: list[Rendered]) -> list[dict]:
    """The figures grouped as the page shows them: one section per ``registry.SECTIONS`` entry that has
    any, in that order; in the per-variant section one collapsible group per variant when a study
    has several (the first open), so a study of dozens of variants stays a page to navigate."""
    sections = []
    for section, title in SECTIONS.items():
        shown = [f for f in figures if f.section == section]
        if section == "question":  # shown with each axis's table (axis_html)
            continue
        if not shown:
            continue
        groups: dict[str | None, list[Rendered]] = {}
        for f in shown:
            groups.setdefault(f.key if section in PER_VARIANT else None, []).append(f)
        sections.append(
            {
                "id": f"figures-{section}",
                "title": title,
                "groups": [
                    {"key": key, "figures": [_figure(f) for f in group]} for key, group in groups.items()
                ],
            }
        )
    return sections


def _figure(f: Rendered) -> dict:
    return {"name": f.name, "caption": f.caption, "data": base64.b64encode(f.png).decode()}


def render_html(
    inputs: ReportInputs,
    figures: list[Rendered],
    summary: pd.DataFrame,
    tests: pd.DataFrame,
    scores: pd.DataFrame,
    axis_tables: dict[str, pd.DataFrame] | None = None,
) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    runs = inputs.runs
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2").render(
        n_runs=len(runs),
        n_datasets=runs["dataset"].nunique(),
        n_models=runs["model"].nunique(),
        n_seeds=runs["seed"].nunique(),
        axes=inputs.varying_axes,
        commits=", ".join(sorted(set(runs["git_commit"]))),
        summary=summary_html(summary),
        oracle=ORACLE,
        tests=tests_html(tests),
        axis_tables=axis_html(axis_tables or {}, figures),
        image_folders=image_folder_sections(inputs.image_folders),
        sections=figure_sections(figures),
        f1=_html(
            scores.pivot_table(index="class", columns=["dataset", "model"], values="f1"),
            index=True,
            float_format=_three,
        ),
        scores=_html(scores, sortable=True, float_format=_three),
        provenance=_html(
            runs[[c for c in PROVENANCE if c in runs]], sortable=True, float_format=lambda v: f"{v:.4g}"
        ),
        diverged=_html(inputs.diverged[DIVERGED]) if len(inputs.diverged) else None,
        at_chance=_html(at_chance[AT_CHANCE]) if len(at_chance := _at_chance(runs)) else None,
    )
