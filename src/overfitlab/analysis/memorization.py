"""The report's per-example figures: which training examples each architecture learned late,
forgot, or memorized (collect's ``examples.parquet`` and ``example_consistency.parquet``).

The page's ``memorization`` section. Each figure is drawn once per dataset variant
(``panels.per_variant``).
The numbers come from the per-example record, which is the training step's own predictions in
training mode (``training/module.py``), as ``train_acc`` is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import layout
from .inputs import ReportInputs
from .panels import each_variant, gray_or_color, panels_by
from .registry import section_figure

KEPT, CHANGED = "#1f4e79", "#c62828"
MAX_FORGETTING_BIN = 5  # forgetting events shown 0, 1, ..., 4, ">= 5"
NAMED_LAST_EPOCH = 15  # up to this many epochs the last one gets a tick beside "not learned"
GRID_PER_KIND = 4  # training images per kind and model in the hardest-examples grid


def last_epoch(inputs: ReportInputs, dataset: str) -> int:
    """The study's last epoch for a dataset (variant): "not learned" is drawn one past it."""
    return int(inputs.epochs.loc[inputs.epochs["dataset"] == dataset, "epoch"].max())


def has_examples(inputs: ReportInputs) -> bool:
    return not inputs.examples.empty


memorization_figure = section_figure("memorization", when=has_examples)


def _label_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(name, rows, colour): all examples, or kept vs changed labels when a control changed some."""
    if frame["changed"].any():
        return [
            ("kept labels", frame[~frame["changed"]], KEPT),
            ("changed labels", frame[frame["changed"]], CHANGED),
        ]
    return [("all examples", frame, KEPT)]


@memorization_figure("learned_epoch")
@each_variant(lambda inputs: inputs.examples)
def learned_epoch(frame: pd.DataFrame, inputs: ReportInputs):
    """When each training example was learned: the first epoch after which the training step
    classifies it correctly to the end (right bar: not learned by the last epoch), share of
    examples, pooled over seeds; kept vs changed labels under a label control. Clean examples are
    learned before noisy ones (Arpit et al. 2017, 'A closer look at memorization in deep
    networks')."""
    dataset = frame["dataset"].iloc[0]
    epochs = last_epoch(inputs, dataset)
    title = f"Epoch each training example was learned, {dataset}"
    fig, panels = panels_by(frame, "model", (3.4, 2.8), title)
    bins = np.arange(1, epochs + 3) - 0.5  # 1..epochs, then epochs + 1 = not learned
    for ax, model, rows in panels:
        for name, group, colour in _label_groups(rows):
            values = group["learned_epoch"].fillna(epochs + 1)
            weights = np.full(len(values), 100 / max(len(values), 1))
            ax.hist(values, bins=bins, weights=weights, histtype="step", color=colour, label=name, lw=1.5)
        ticks = [1, max(1, epochs // 2)] + ([epochs] if epochs <= NAMED_LAST_EPOCH else [])
        ax.set_xticks([*ticks, epochs + 1], [*ticks, "not"])  # the last epoch's tick would overlap "not"
        ax.set(xlabel="epoch learned", ylabel="% of examples")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    return fig


@memorization_figure("forgetting_events")
@each_variant(lambda inputs: inputs.examples)
def forgetting_events(frame: pd.DataFrame, inputs: ReportInputs):
    """Forgetting events per training example (classified correctly at one epoch, wrongly at the
    next), share of examples pooled over seeds; 'never' = never classified correctly. The legend
    gives the share of unforgettable examples (learned and never forgotten). Toneva et al. 2019,
    'An empirical study of example forgetting during deep neural network learning': many examples
    are never forgotten, noisy and atypical ones are forgotten often."""
    dataset = frame["dataset"].iloc[0]
    title = f"Forgetting events per training example, {dataset}"
    fig, panels = panels_by(frame, "model", (3.4, 2.8), title)
    ticks = [str(i) for i in range(MAX_FORGETTING_BIN)] + [f"≥{MAX_FORGETTING_BIN}", "never"]
    for ax, model, rows in panels:
        groups = _label_groups(rows)
        width = 0.8 / len(groups)
        for i, (name, group, colour) in enumerate(groups):
            events = group["forgetting_events"].clip(upper=MAX_FORGETTING_BIN)
            shares = [((events == k) & ~group["never_correct"]).mean() for k in range(MAX_FORGETTING_BIN + 1)]
            shares.append(group["never_correct"].mean())
            label = f"{name}: {group['unforgettable'].mean():.0%} unforgettable"
            x = np.arange(len(ticks)) + (i - (len(groups) - 1) / 2) * width
            ax.bar(x, np.asarray(shares) * 100, width=width, color=colour, label=label)
        ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
        ax.set(xlabel="forgetting events", ylabel="% of examples")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    return fig


@memorization_figure("consistency_per_class")
@each_variant(lambda inputs: inputs.example_consistency)
def consistency_per_class(frame: pd.DataFrame, inputs: ReportInputs):
    """Consistency per class: the share of seeds whose final network (eval mode) classifies a
    training example correctly, averaged over the class's examples (on the label trained on; kept
    vs changed labels under a control). Jiang et al. 2021, 'Characterizing structural
    regularities of labeled data in overparameterized models' (C-scores): regular examples are
    classified consistently."""
    dataset = frame["dataset"].iloc[0]
    classes = list(dict.fromkeys(frame.sort_values("label")["class"]))
    title = f"Consistency across seeds per class, {dataset}"
    fig, panels = panels_by(frame, "model", (3.6, 3.0), title)
    for ax, model, rows in panels:
        groups = _label_groups(rows)
        height = 0.8 / len(groups)
        for i, (name, group, colour) in enumerate(groups):
            means = group.groupby("class")["consistency"].mean().reindex(classes) * 100
            y = np.arange(len(classes)) + (i - (len(groups) - 1) / 2) * height
            ax.barh(y, means.to_numpy(), height=height, color=colour, label=name)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="% of seeds correct at the end", xlim=(0, 100))
        ax.set_title(f"{model} ({int(rows['seeds'].max())} seeds)", fontsize=9)
        # below the axis: the bars reach 100 % in most classes, any place inside would cover them
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    return fig


def hardest(consistency: pd.DataFrame, epochs: int, n: int = GRID_PER_KIND) -> dict[str, pd.DataFrame]:
    """The ``n`` training examples of one (variant, model) latest learned (mean learned epoch, not
    learned counted as ``epochs`` + 1), most forgotten and least consistent, ties by example."""
    rows = consistency.assign(
        late=consistency["mean_learned_epoch"].where(
            consistency["seeds_learned"] == consistency["seeds"], epochs + 1
        )
    )
    return {
        "latest learned": rows.sort_values(["late", "example"], ascending=[False, True]).head(n),
        "most forgotten": rows.sort_values(
            ["mean_forgetting_events", "example"], ascending=[False, True]
        ).head(n),
        "least consistent": rows.sort_values(["consistency", "example"]).head(n),
    }


@memorization_figure("hardest_examples")
@each_variant(lambda inputs: inputs.example_consistency)
def hardest_examples(frame: pd.DataFrame, inputs: ReportInputs):
    """The training images each architecture learned latest, forgot most often and classified least
    consistently across seeds, with the label trained on (and the true one when a control changed
    it: 'given←true', in red) and the mean over seeds. Mislabeled and atypical images lead these
    lists (Toneva et al. 2019; Jiang et al. 2021)."""
    # One row per (model, kind), one image per column, each titled with its label and value.
    import matplotlib.pyplot as plt

    dataset = frame["dataset"].iloc[0]
    epochs = last_epoch(inputs, dataset)
    prepared = inputs.prepared(dataset)
    manifest = pd.read_csv(layout.manifest_file(prepared), usecols=["example", "split"])
    position = {e: i for i, e in enumerate(manifest.loc[manifest["split"] == "train", "example"])}
    images = np.load(layout.images_file(prepared, "train"), mmap_mode="r")
    names = dict(zip(frame["label"], frame["class"], strict=True))  # class names, from the given labels
    models = list(dict.fromkeys(frame["model"]))
    rows = [(m, kind, r) for m in models for kind, r in hardest(frame[frame.model == m], epochs).items()]
    columns = max(len(r) for _, _, r in rows)
    size = (1.2 * columns + 1.4, 1.45 * len(rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=size, squeeze=False, layout="constrained")
    fig.suptitle(f"Hardest training examples per architecture, {dataset}")
    for line, (model, kind, examples) in zip(axes, rows, strict=True):
        line[0].set_ylabel(f"{model}\n{kind}", fontsize=8, rotation=0, ha="right", va="center")
        for ax, row in zip(line, examples.to_dict("records"), strict=False):
            tile = np.asarray(images[position[row["example"]]]).transpose(1, 2, 0).astype(np.float32)
            ax.imshow(tile.squeeze() / 255, cmap=gray_or_color(tile), vmin=0, vmax=1)
            true = str(names.get(row["original_label"], row["original_label"]))
            text = f"{row['class'][:10]}←{true[:10]}" if row["changed"] else row["class"]
            value = {
                "latest learned": f"epoch {row['late']:.0f}" if row["late"] <= epochs else "not learned",
                "most forgotten": f"{row['mean_forgetting_events']:.1f}× forgotten",
                "least consistent": f"{row['consistency']:.0%} of seeds",
            }[kind]
            ax.set_title(f"{text}\n{value}", fontsize=7, color=CHANGED if row["changed"] else "black")
        for ax in line:
            ax.set_xticks([]), ax.set_yticks([])
            ax.spines[:].set_visible(ax.has_data())
    return fig
