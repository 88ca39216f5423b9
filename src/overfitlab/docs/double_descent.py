"""docs/double-descent.md: test error against width (Belkin et al. 2019; Nakkiran et al. 2019), per
training size and label noise, from the study's committed summary.json.

The threshold, the n·K width and the peak are the report's own definitions
(``analysis.double_descent``), applied to the summary's means. One difference: the summary's
training error is the final epoch's running one (training mode), where the report's is the final
net's in eval mode (``double_descent.csv``, a DVC output no clone has).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..analysis.double_descent import INTERPOLATED, interpolation_width, params_width, peak
from ..analysis.stats import ALPHA
from .committed import CLASSES, count, entries, p_value, pct, points, source_line, t_interval, welch_p
from .committed import summary as read_summary

STUDY = "studies/double-descent"
SERIES = ["train_size", "label_noise"]


def _curves(root: Path) -> dict[tuple[int, float], pd.DataFrame]:
    """Per (training size, noise): one row per width, with the columns ``analysis.double_descent`` reads."""
    table = entries(read_summary(root, STUDY))
    curves = {}
    for (size, noise), g in table.groupby(SERIES, sort=True):
        g = g.sort_values("width").reset_index(drop=True)
        bounds = [t_interval(r.test_acc_mean, r.test_acc_sd, r.n_seeds) for r in g.itertuples()]
        curves[(int(size), float(noise))] = g.assign(
            test_error=1 - g["test_acc_mean"],
            test_error_low=[1 - high for _, high in bounds],
            test_error_high=[1 - low for low, _ in bounds],
            train_error=1 - g["train_acc_mean"],
            n_classes=g["dataset"].map(CLASSES),
        )
    return curves


def _series(size: int, noise: float) -> str:
    return f"n = {count(size)}, noise {noise:g}"


def _at(curve: pd.DataFrame, width: float) -> pd.Series:
    return curve[curve["width"] == width].iloc[0]


def _error(row: pd.Series) -> str:
    """Test error % with its 95 % interval."""
    return f"{pct(row['test_error'])} [{pct(row['test_error_low'])}, {pct(row['test_error_high'])}] %"


def curves_block(root: Path) -> str:
    """Every width of every series: test error with its interval, and the running training error."""
    curves = _curves(root)
    lines = [
        "| width k | parameters | "
        + " | ".join(f"{_series(*s)}: test error % [95 % CI] | train error %" for s in curves)
        + " |",
        "|---" * (2 + 2 * len(curves)) + "|",
    ]
    first = next(iter(curves.values()))
    for width, params in zip(first["width"], first["n_params"]):
        cells = []
        for curve in curves.values():
            r = _at(curve, width)
            chance = f" ({int(r['n_at_chance'])} seed at chance)" if r["n_at_chance"] else ""
            cells += [_error(r).removesuffix(" %") + chance, pct(r["train_error"])]
        lines.append(f"| {width:g} | {count(params)} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", source_line(root, STUDY, ": final epoch, mean over the seeds")])


def claims_block(root: Path) -> str:
    """The double-descent claims, each per series: where it holds, where not, with its test."""
    curves = _curves(root)
    found = {}
    for (size, noise), curve in curves.items():
        found[(size, noise)] = {
            "threshold": interpolation_width(curve),
            "nK": params_width(curve, size),
            **peak(curve),
        }
    rows = [_claim(claim, list(decide(curves, found))) for claim, decide in CLAIMS]
    at_chance = [
        f"k = {r.width:g}, {_series(*key)}: {int(r.n_at_chance)} of {int(r.n_seeds)} seeds"
        for key, curve in curves.items()
        for r in curve.itertuples()
        if r.n_at_chance
    ]
    return "\n".join(
        [
            "| claim (paper) | holds at | does not hold at | the numbers |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Interpolation threshold: the smallest width whose mean final running training error is at "
            f"most {pct(INTERPOLATED, 0)} %. n·K: the width whose parameter count equals training examples × "
            f"classes. Peak: the highest mean test error after the first local minimum. Tests: Welch's "
            f"t-test of two widths' mean test accuracy from their sds (holds at p < {ALPHA:g}); intervals: "
            f"the seeds' 95 % t-interval. Runs that never left chance, kept in the means: "
            f"{'; '.join(at_chance) or 'none'}. " + source_line(root, STUDY),
        ]
    )


def _welch(curve: pd.DataFrame, a: float, b: float) -> float:
    return welch_p(_at(curve, a), _at(curve, b))


def _rise(curves: dict, found: dict):
    for key, f in found.items():
        if math.isnan(f["peak_width"]):
            yield _series(*key), False, f"{_series(*key)}: none, test error only falls"
            continue
        p = _welch(curves[key], f["peak_width"], f["bottom_width"])
        yield (
            _series(*key),
            p < ALPHA,
            (
                f"{_series(*key)}: from {pct(f['bottom_test_error'])} % at k = {f['bottom_width']:g} to "
                f"{_error(_at(curves[key], f['peak_width']))} at k = {f['peak_width']:g}, "
                f"{points(100 * f['rise'])} points, {p_value(p)}"
            ),
        )


def _at_threshold(curves: dict, found: dict):
    for key, f in found.items():
        if not math.isnan(f["peak_width"]):
            yield (
                _series(*key),
                f["peak_width"] == f["threshold"],
                (
                    f"{_series(*key)}: peak k = {f['peak_width']:g} (train error there "
                    f"{pct(_at(curves[key], f['peak_width'])['train_error'])} %), threshold k = "
                    f"{f['threshold']:g}, params = n·K at k = {f['nK']:.1f}"
                ),
            )


def _noise(curves: dict, found: dict):
    for size in sorted({s for s, _ in found}):
        noises = sorted(n for s, n in found if s == size)
        rise = {n: 0.0 if math.isnan(found[(size, n)]["rise"]) else found[(size, n)]["rise"] for n in noises}
        label = f"n = {count(size)}"
        yield (
            label,
            rise[noises[-1]] > rise[noises[0]],
            (f"{label}: rise {', '.join(f'{points(100 * rise[n])} points at noise {n:g}' for n in noises)}"),
        )


def _more_data(curves: dict, found: dict):
    for noise in sorted({n for _, n in found}):
        sizes = sorted(s for s, n in found if n == noise)
        widths = {s: found[(s, noise)]["peak_width"] for s in sizes}
        if sum(not math.isnan(w) for w in widths.values()) >= 2:
            yield (
                f"noise {noise:g}",
                widths[sizes[-1]] > widths[sizes[0]],
                (
                    f"noise {noise:g}: peak at "
                    + ", ".join(f"k = {widths[s]:g} for n = {count(s)}" for s in sizes)
                ),
            )


def _fall(curves: dict, found: dict):
    for key, f in found.items():
        if math.isnan(f["peak_width"]):
            continue
        curve = curves[key]
        widest = curve["width"].iloc[-1]
        p = _welch(curve, f["peak_width"], widest)
        fall = f["peak_test_error"] - curve["test_error"].iloc[-1]
        yield (
            _series(*key),
            fall > 0 and p < ALPHA,
            (
                f"{_series(*key)}: from k = {f['peak_width']:g} to k = {widest:g} "
                f"({_error(curve.iloc[-1])}), {points(-100 * fall)} points, {p_value(p)}"
            ),
        )


# (claim as the papers state it, what decides it per series)
CLAIMS = [
    ("test error rises after its first minimum to a peak (Belkin et al. 2019)", _rise),
    (
        "the peak sits at the interpolation threshold (Belkin et al. 2019; Nakkiran et al. 2019)",
        _at_threshold,
    ),
    ("label noise makes the peak higher (Nakkiran et al. 2019)", _noise),
    ("more training data moves the peak to larger widths (Nakkiran et al. 2019)", _more_data),
    ("past the peak, wider nets have lower test error again (Belkin et al. 2019)", _fall),
]


def _claim(claim: str, found: list[tuple[str, bool, str]]) -> str:
    holds = [label for label, held, _ in found if held] or ["–"]
    not_held = [label for label, held, _ in found if not held] or ["–"]
    return f"| {claim} | {'; '.join(holds)} | {'; '.join(not_held)} | {'; '.join(t for *_, t in found)} |"
