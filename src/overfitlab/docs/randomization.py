"""docs/randomization.md: the randomization test (Zhang et al. 2017) and which training examples
were memorized (Arpit et al. 2017; Toneva et al. 2019), from the studies' committed summary.json.

A claim row says at which label-noise fractions p it holds and where it does not, with the numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..analysis.stats import ALPHA
from ..collection.summaries import FIT_THRESHOLD
from .committed import (
    CLASSES,
    entries,
    examples,
    mean_sd,
    p_value,
    pct,
    points,
    read,
    settings,
    source_line,
    summary_path,
    t_interval,
    welch_p,
)
from .committed import summary as read_summary

STUDY = "studies/randomization"
DEFAULT = "."  # the project root's own study
NOISE = "label_noise"
LARGE_SHARE = 0.5  # "a large share of examples is never forgotten": at least half of them
DROPOUT = "_dropout"  # a model and the same model with dropout: `mlp_300_100`, `mlp_300_100_dropout`


def _models(root: Path) -> list[str]:
    return read(root, Path(STUDY) / "params.yaml")["study"]["models"]


def _by_noise(root: Path) -> pd.DataFrame:
    return entries(read_summary(root, STUDY)).set_index(["model", NOISE]).sort_index()


def _p(noise: float) -> str:
    return f"p = {noise:g}"


def _list(values: list) -> str:
    """``p = 0, 0.2`` (values: numbers or their text), or "–" for none."""
    return "p = " + ", ".join(v if isinstance(v, str) else f"{v:g}" for v in values) if values else "–"


def table_block(root: Path) -> str:
    """Final test and training accuracy per p and model."""
    table, models = _by_noise(root), _models(root)
    lines = [
        "| p | " + " | ".join(f"`{m}` test % | train %" for m in models) + " |",
        "|---" * (1 + 2 * len(models)) + "|",
    ]
    for noise in sorted(table.index.get_level_values(NOISE).unique()):
        cells = []
        for model in models:
            e = table.loc[(model, noise)]
            chance = f" ({int(e['n_at_chance'])} at chance)" if e["n_at_chance"] else ""
            cells += [mean_sd(e) + chance, pct(e["train_acc_mean"])]
        lines.append(f"| {noise:g} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", source_line(root, STUDY, ": final epoch, mean ± sd over the seeds")])


def claims_block(root: Path) -> str:
    """Zhang et al.'s randomization claims and Arpit et al.'s dropout claim, per model."""
    table, models = _by_noise(root), _models(root)
    chance = 1 / CLASSES[read(root, Path(STUDY) / "params.yaml")["study"]["datasets"][0]]
    lines = ["| claim (paper) | model | holds at | does not hold at | the numbers |", "|---|---|---|---|---|"]
    for model in models:
        t = table.loc[model]
        fitted = t["train_acc_mean"] >= FIT_THRESHOLD
        lines.append(
            f"| the nets fit the training set at every p, random labels included (Zhang et al. 2017): "
            f"mean final running training accuracy ≥ {100 * FIT_THRESHOLD:.0f} % | `{model}` | "
            f"{_list(list(t.index[fitted]))} | {_list(list(t.index[~fitted]))} | train %: "
            + ", ".join(f"{_p(n)} {pct(v)}" for n, v in t["train_acc_mean"].items())
            + " |"
        )
        noises, test = list(t.index), t["test_acc_mean"]
        steps = list(zip(noises, noises[1:]))
        falls = [f"{a:g} → {b:g}" for a, b in steps if test[b] < test[a]]
        rises = [f"{a:g} → {b:g}" for a, b in steps if test[b] >= test[a]]
        last = t.iloc[-1]
        low, high = t_interval(last["test_acc_mean"], last["test_acc_sd"], int(last["n_seeds"]))
        where = "above" if low > chance else ("below" if high < chance else "at")
        lines.append(
            f"| test accuracy falls towards chance as p grows (Zhang et al. 2017) | `{model}` | "
            f"{', '.join(falls) or '–'} | {', '.join(rises) or '–'} | test %: "
            + ", ".join(f"{_p(n)} {pct(v)}" for n, v in test.items())
            + f"; {_p(noises[0])} vs {_p(noises[-1])}: {p_value(welch_p(t.iloc[0], last))}; at "
            f"{_p(noises[-1])} {pct(last['test_acc_mean'])} [{pct(low)}, {pct(high)}] %, {where} chance "
            f"({pct(chance, 0)} %) |"
        )
        if model + DROPOUT in models:
            lines.append(_dropout_row(model, table.loc[model + DROPOUT], t))
    return "\n".join(
        [
            *lines,
            "",
            f"Test accuracy compared with Welch's t-test from the means and sds (a claim holds at p < "
            f"{ALPHA:g}); the interval is the seeds' 95 % t-interval. "
            + source_line(root, STUDY, ": final epoch"),
        ]
    )


def _dropout_row(model: str, dropout: pd.DataFrame, plain: pd.DataFrame) -> str:
    better, not_better, numbers = [], [], []
    for noise in dropout.index:
        d, m = dropout.loc[noise], plain.loc[noise]
        diff, p = 100 * (d["test_acc_mean"] - m["test_acc_mean"]), welch_p(d, m)
        (better if diff > 0 and p < ALPHA else not_better).append(f"{noise:g}")
        numbers.append(
            f"{_p(noise)} {pct(d['test_acc_mean'])} vs {pct(m['test_acc_mean'])} "
            f"({points(diff)}, {p_value(p)})"
        )
    return (
        f"| dropout keeps test accuracy higher under label noise (Arpit et al. 2017): `{model + DROPOUT}` "
        f"vs `{model}` | `{model + DROPOUT}` | {_list(better)} | "
        f"{_list(not_better)} | test %: {'; '.join(numbers)} |"
    )


def _learned(epoch: float | None, epochs: int) -> str:
    return f"not by epoch {epochs}" if epoch is None or pd.isna(epoch) else f"{epoch:g}"


def memorization_block(root: Path) -> str:
    """Kept vs changed labels per p and model (learned later? forgotten more?), the dropout gap, and
    the unforgettable share on clean data."""
    params = read(root, Path(STUDY) / "params.yaml")
    epochs, models = params["train"]["epochs"], params["study"]["models"]
    ex = examples(read_summary(root, STUDY))
    kept = ex[ex["part"] == "kept_labels"].set_index(["model", NOISE]).sort_index()
    changed = ex[ex["part"] == "changed_labels"].set_index(["model", NOISE]).sort_index()
    later = pd.DataFrame(
        {
            "kept": kept["median_learned_epoch"].astype(float).fillna(math.inf),
            "changed": changed["median_learned_epoch"].astype(float).fillna(math.inf),
        }
    )
    lines = ["| claim (paper) | model | holds at | does not hold at | the numbers, kept vs changed labels |"]
    lines.append("|---|---|---|---|---|")
    for model in models:
        k, c = kept.loc[model], changed.loc[model]
        counts = {n: f"{int(k.loc[n, 'examples'])} / {int(c.loc[n, 'examples'])}" for n in k.index}
        lines.append(
            _row(
                "changed labels are learned later (Arpit et al. 2017): median learned epoch",
                model,
                later.loc[model, "changed"] > later.loc[model, "kept"],
                [
                    f"{_p(n)} ({counts[n]} examples): "
                    f"{_learned(k.loc[n, 'median_learned_epoch'], epochs)} vs "
                    f"{_learned(c.loc[n, 'median_learned_epoch'], epochs)}"
                    for n in k.index
                ],
            )
        )
        forgetting = "mean_forgetting_events"
        lines.append(
            _row(
                "changed labels are forgotten more (Toneva et al. 2019): mean forgetting events",
                model,
                c[forgetting] > k[forgetting],
                [f"{_p(n)}: {k.loc[n, forgetting]:.2f} vs {c.loc[n, forgetting]:.2f}" for n in k.index],
            )
        )
    for model in (m for m in models if m + DROPOUT in models):
        lines.append(_dropout_memorization_row(model, kept, changed))
    lines += _unforgettable_rows(root, ex, models)
    return "\n".join(
        [
            *lines,
            "",
            "Pooled over the seeds and the training examples (the counts are examples × seeds); a median "
            "learned epoch counts an example not learned by the end as later than any epoch. No test is "
            "given: summary.json holds these pooled numbers only, and the per-example tables a test "
            f"needs are DVC outputs that no clone has. From `{summary_path(STUDY)}` (`examples`) and, "
            f"for the default study, `{summary_path(DEFAULT)}`. Study: {settings(root, STUDY)}.",
        ]
    )


def _row(claim: str, model: str, holds: pd.Series, numbers: list[str]) -> str:
    return (
        f"| {claim} | `{model}` | {_list(list(holds.index[holds]))} | "
        f"{_list(list(holds.index[~holds]))} | {'; '.join(numbers)} |"
    )


def _dropout_memorization_row(model: str, kept: pd.DataFrame, changed: pd.DataFrame) -> str:
    """Dropout leaves more of the changed labels than of the kept ones unlearned by the end, and by
    more than the same net without dropout does."""
    share, m = "learned_by_end_share", model + DROPOUT
    gap = {m: kept.loc[m, share] - changed.loc[m, share] for m in (model, model + DROPOUT)}
    holds = gap[model + DROPOUT] > gap[model]
    numbers = [
        f"{_p(n)}: `{m}` {pct(kept.loc[(m, n), share], 0)} vs {pct(changed.loc[(m, n), share], 0)} %"
        + f", `{model}` {pct(kept.loc[(model, n), share], 0)} vs {pct(changed.loc[(model, n), share], 0)} %"
        for n in holds.index
    ]
    return _row(
        "dropout slows the memorization of changed labels far more than the learning of kept ones "
        "(Arpit et al. 2017): share learned by the end, the gap kept − changed larger with dropout",
        model + DROPOUT,
        holds,
        numbers,
    )


def _unforgettable_rows(root: Path, ex: pd.DataFrame, models: list[str]) -> list[str]:
    clean = ex[(ex["part"] == "all") & (ex[NOISE] == 0)].set_index("model")
    rows = [
        (model, "randomization p = 0", clean.loc[model, "unforgettable_share"])
        for model in models
        if model in clean.index
    ]
    default = examples(read_summary(root, DEFAULT))
    default_train = read(root, Path("params.yaml"))
    rows += [
        (r.model, f"default study ({default_train['train']['epochs']} epochs)", r.unforgettable_share)
        for r in default[default["part"] == "all"].itertuples()
    ]
    claim = (
        f"a large share of examples is never forgotten on clean data (Toneva et al. 2019 on MNIST): "
        f"at least {pct(LARGE_SHARE, 0)} % unforgettable"
    )
    return [
        f"| {claim} | `{model}` | {where if share >= LARGE_SHARE else '–'} | "
        f"{'–' if share >= LARGE_SHARE else where} | {pct(share, 0)} % unforgettable |"
        for model, where, share in rows
    ]
