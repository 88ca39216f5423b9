"""Stated results, generated from committed files, never typed.

    python -m overfitlab.docs           # rewrite every generated block of README.md and docs/*.md
    python -m overfitlab.docs --check   # exit 1 naming each block that differs from the files

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; ``BLOCKS``
names the function that writes it from a study's committed results (``summary.json``, and the
``runs.csv`` / ``axes.json`` that collect writes uncached so a clone has them). A test runs
``--check``, so results that change without their docs fail CI.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from .analysis.regularization import NONE, regularization_table
from .collect import FIT_THRESHOLD
from .errors import ConfigError, exit_on_config_error
from .project import project_root

REGULARIZATION = Path("studies/regularization/reports/metrics")
FEW_POINTS = 1.0  # (a): a regimen "improves test accuracy" by at least this many points
NOT_NECESSARY = 5.0  # (b): no regularizer stays within this many points of the best regimen


def _read(root: Path, path: Path) -> pd.DataFrame | dict:
    file = root / path
    if not file.exists():
        raise ConfigError(f"{file} is missing: run its study (scripts/study.sh) and commit its results")
    return json.loads(file.read_text()) if file.suffix == ".json" else pd.read_csv(file)


def regularization(root: Path) -> pd.DataFrame:
    runs = _read(root, REGULARIZATION / "runs.csv")
    return regularization_table(runs, _read(root, REGULARIZATION / "axes.json"))


def _pct(value: float) -> str:
    return f"{value:.1f}"


def regularization_table_block(root: Path) -> str:
    """docs/regularization.md: the report's regularization table, every row."""
    lines = [
        "| model | labels | regimen | train % [95 % CI] | test % [95 % CI] | gap (points) | "
        "epochs to fit (seeds fitted) | test vs none (points, exact p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in regularization(root).itertuples():
        fit = (
            f"{r.fit_epoch_median:.0f} ({r.seeds_fitted}/{r.seeds})"
            if r.seeds_fitted
            else f"not in {r.epochs} (0/{r.seeds})"
        )
        versus = "" if r.regimen == NONE else f"{_points(r.test_vs_none)}, p = {r.p_vs_none:.2g}"
        train = f"{_pct(r.train_mean)} [{_pct(r.train_ci_low)}, {_pct(r.train_ci_high)}]"
        test = f"{_pct(r.test_mean)} [{_pct(r.test_ci_low)}, {_pct(r.test_ci_high)}]"
        cells = [r.model, r.labels, r.regimen, train, test, f"{r.gap_mean:.1f}", fit, versus]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regularization_claims_block(root: Path) -> str:
    """README: Zhang et al.'s three claims, each per model: holds or does not hold here, and why."""
    table = regularization(root)
    lines = ["| claim (Zhang et al. 2017) | model | here | the numbers |", "|---|---|---|---|"]
    for model, t in table.groupby("model", sort=True):
        true = t[t["labels"] == "true labels"].set_index("regimen")
        others = true.drop(index=NONE)
        best = others["test_vs_none"].idxmax()
        gain = others.loc[best, "test_vs_none"]
        lines.append(
            f"| (a) explicit regularization improves test accuracy by a few points | {model} | "
            f"{'holds' if gain >= FEW_POINTS else 'does not hold'} | best regimen {best}: "
            f"{_points(gain)} points over none ({_pct(true.loc[NONE, 'test_mean'])} → "
            f"{_pct(true.loc[best, 'test_mean'])} %, exact p = {others.loc[best, 'p_vs_none']:.2g} with "
            f"{int(true.loc[best, 'seeds'])} seeds a side); every regimen: "
            + ", ".join(f"{name} {_points(d)}" for name, d in others["test_vs_none"].items())
            + " |"
        )
        top = true["test_mean"].max()
        lines.append(
            f"| (b) without it the nets still generalize | {model} | "
            f"{'holds' if top - true.loc[NONE, 'test_mean'] <= NOT_NECESSARY else 'does not hold'} | "
            f"no regularizer: {_pct(true.loc[NONE, 'test_mean'])} % test (train "
            f"{_pct(true.loc[NONE, 'train_mean'])} %), {top - true.loc[NONE, 'test_mean']:.1f} points under "
            f"the best regimen; chance is 10 % |"
        )
        random = t[t["labels"] == "random labels"].set_index("regimen")
        regularized = random.drop(index=NONE)
        fitted = [name for name, r in regularized.iterrows() if r["seeds_fitted"] == r["seeds"]]
        verdict = (
            "holds" if len(fitted) == len(regularized) else ("holds in part" if fitted else "does not hold")
        )
        lines.append(
            f"| (c) with it they still fit random labels | {model} | {verdict} | "
            f"without: {_fit(random.loc[NONE])}; "
            + "; ".join(f"{name}: {_fit(r)}" for name, r in regularized.iterrows())
            + " |"
        )
    return "\n".join(lines)


def _fit(r: pd.Series) -> str:
    """A regimen on random labels: train and test accuracy, and whether (when) every seed fitted."""
    reached = (
        f"every seed fitted (≥ {FIT_THRESHOLD * 100:.0f} %) by epoch {r['fit_epoch_median']:.0f} (median)"
        if r["seeds_fitted"] == r["seeds"]
        else f"{int(r['seeds_fitted'])}/{int(r['seeds'])} seeds fitted in {int(r['epochs'])} epochs"
    )
    return f"train {_pct(r['train_mean'])} %, test {_pct(r['test_mean'])} %, {reached}"


def _points(value: float) -> str:
    """A difference in points, signed; no "-0.0"."""
    return f"{value:+.1f}" if round(value, 1) != 0 else "±0.0"


def alexnet_l2_block(root: Path) -> str:
    """README's source table: the AlexNet clone with and without the source's L2 of 0.0005."""
    rows = []
    for study, what in (
        ("microscopy-alexnet", "without weight decay"),
        ("microscopy-alexnet-l2", "with the source's L2 0.0005 on every layer (`weight_decay_mode: l2`)"),
    ):
        summary = _read(root, Path(f"studies/sources/{study}/reports/metrics/summary.json"))
        entry = summary["fashion_mnist"]["keras_alexnet"]
        sd = f" ± {100 * entry['test_acc_sd']:.1f}" if entry.get("test_acc_sd") is not None else ""
        rows.append(
            f"| `sources/{study}`: `keras_alexnet` {what} | {entry['n_seeds']} | "
            f"{100 * entry['test_acc_mean']:.1f}{sd} % | {100 * entry['train_acc_mean']:.1f} % |"
        )
    return "\n".join(["| study | seeds | test (mean ± sd) | train |", "|---|---|---|---|", *rows])


BLOCKS = {
    "regularization-claims": regularization_claims_block,
    "regularization-table": regularization_table_block,
    "alexnet-l2": alexnet_l2_block,
}
PATTERN = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def rewrite(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten, and the names of the blocks that changed."""
    changed = []

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            raise ConfigError(f"generated block {name!r} is unknown; known: {sorted(BLOCKS)}")
        body = BLOCKS[name](root).rstrip("\n") + "\n"
        if body != match.group(3):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return PATTERN.sub(block, text), changed


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


@exit_on_config_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m overfitlab.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    root = project_root()
    stale = []
    for path in documents(root):
        text = path.read_text()
        new, changed = rewrite(text, root)
        stale += [f"{path.relative_to(root)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    if args.check and stale:
        print(
            f"error: generated blocks differ from the committed results: {', '.join(stale)}; "
            "run `python -m overfitlab.docs`",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"{len(stale)} block(s) {'rewritten' if stale else 'current'}", file=sys.stderr)


if __name__ == "__main__":
    main()
