"""docs/sources.md and docs/image-folders.md: the source studies against the numbers their documents
report (shared/seeds), and the image-folder demo, from the studies' committed summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .committed import (
    count,
    entries,
    mean_sd,
    p_value,
    pct,
    points,
    source_line,
    summary_path,
    welch_p,
    with_interval,
)
from .committed import summary as read_summary

WITHIN = 1.0  # "~x %" (a single run of the source's) is reproduced within this many points of x


class Source(NamedTuple):
    """A number a source document reports: its words, the metric it is, and how ours compares."""

    says: str
    metric: str = "test_acc"
    compare: str | None = None  # ">": at least; "~": within WITHIN points; "in": inside [low, high]
    value: float | tuple[float, float] | None = None


MICROSCOPY = Source("> 91 % test accuracy (deep network)", "test_acc", ">", 0.91)
ALEXNET = Source("~72 % test accuracy (AlexNet clone)", "test_acc", "~", 0.72)
SOURCES = {
    "studies/sources/microscopy": MICROSCOPY,
    "studies/sources/microscopy-as-source": MICROSCOPY,
    "studies/sources/microscopy-pytorch-init": MICROSCOPY,
    "studies/sources/microscopy-alexnet": ALEXNET,
    "studies/sources/microscopy-alexnet-l2": ALEXNET,
    "studies/sources/fashion-notebook": Source("87.2 % validation accuracy (one run)", "val_acc", "~", 0.872),
    "studies/sources/cifar10-course/dense": Source("35–40 % test accuracy", "test_acc", "in", (0.35, 0.40)),
    "studies/sources/cifar10-course/cnn-no-pool": Source(
        "~85 % train, ~55 % validation", "val_acc", "~", 0.55
    ),
    "studies/sources/cifar10-course/cnn-pool-dropout": Source(
        "70–75 % test accuracy", "test_acc", "in", (0.70, 0.75)
    ),
    "studies/sources/mnist-0-vs-1": Source('"almost 100 %" (no number printed)'),
    "studies/sources/mnist-lesson": Source("no number printed: A below B, C (dropout) above B, D above all"),
}
# Two studies that differ in one thing, compared on one model: what that one thing moves.
CHANGES = [
    (
        "studies/sources/microscopy",
        "studies/sources/microscopy-as-source",
        "keras_deep_network",
        "training as the source did (all 60 000 images, no validation split, Keras' Adam epsilon)",
    ),
    (
        "studies/sources/microscopy-alexnet",
        "studies/sources/microscopy-alexnet-l2",
        "keras_alexnet",
        "the source's L2 weight decay 0.0005 on every layer",
    ),
]
TEXTURES = "studies/textures"


def _verdict(source: Source, mean: float) -> str:
    if source.compare is None:
        return "no number to compare"
    if source.compare == "in":
        low, high = source.value
        inside = low <= mean <= high
        return (
            f"{'reproduced' if inside else 'not reproduced'} ({'inside' if inside else 'outside'} the range)"
        )
    diff = 100 * (mean - source.value)
    unit = "point" if round(abs(diff), 1) == 1 else "points"
    where = f"{abs(diff):.1f} {unit} {'above' if diff >= 0 else 'under'}"
    ok = diff >= 0 if source.compare == ">" else abs(diff) <= WITHIN
    return f"{'reproduced' if ok else 'not reproduced'} ({where})"


def _entries(root: Path, study: str) -> pd.DataFrame | None:
    return entries(read_summary(root, study)) if (root / summary_path(study)).exists() else None


def sources_block(root: Path) -> str:
    lines = [
        "| study | model (parameters) | the source says | ours: mean ± sd [95 % CI] % (seeds) | here |",
        "|---|---|---|---|---|",
    ]
    for study, source in SOURCES.items():
        table = _entries(root, study)
        name = f"`{study.removeprefix('studies/')}`"
        if table is None:
            lines.append(f"| {name} | – | {source.says} | not measured: no committed `summary.json` | – |")
            continue
        for _, e in table.iterrows():
            metric = source.metric.removesuffix("_acc")
            chance = f", {int(e['n_at_chance'])} at chance, kept in the mean" if e["n_at_chance"] else ""
            ours = f"{metric} {with_interval(e, source.metric, 2)} ({int(e['n_seeds'])}{chance})"
            if metric != "test":
                ours += f"; test {with_interval(e, digits=2)}"
            lines.append(
                f"| {name} | `{e['model']}` ({count(e['n_params'])}) | {source.says} | {ours} | "
                f"{_verdict(source, e[f'{source.metric}_mean'])} |"
            )
    changes = []
    for before, after, model, what in CHANGES:
        a, b = (t[t["model"] == model].iloc[0] for t in (_entries(root, before), _entries(root, after)))
        changes.append(
            f"- {what} (`{after.removeprefix('studies/')}` against `{before.removeprefix('studies/')}`, "
            f"`{model}`): test {pct(a['test_acc_mean'])} → {pct(b['test_acc_mean'])} % "
            f"({points(100 * (b['test_acc_mean'] - a['test_acc_mean']))} points, {int(a['n_seeds'])} vs "
            f"{int(b['n_seeds'])} seeds, {p_value(welch_p(a, b))})."
        )
    return "\n".join(
        [
            *lines,
            "",
            *changes,
            "",
            f'Final epoch. "Reproduced": at least the source\'s number for "> x", within {WITHIN:g} point of '
            "it for a single run's \"~x\", inside a stated range. The interval is the seeds' 95 % t-interval "
            "of the mean, cut to [0, 100] %. From each study's `reports/metrics/summary.json`.",
        ]
    )


def textures_block(root: Path) -> str:
    lines = [
        "| model | parameters | test % (mean ± sd) | train % | shifted test set % (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    for _, e in _entries(root, TEXTURES).iterrows():
        lines.append(
            f"| `{e['model']}` | {count(e['n_params'])} | {mean_sd(e)} | {pct(e['train_acc_mean'])} | "
            f"{mean_sd(e, 'test_acc/shifted')} |"
        )
    return "\n".join([*lines, "", source_line(root, TEXTURES, ": final epoch")])
