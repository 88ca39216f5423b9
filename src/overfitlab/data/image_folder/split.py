"""The split rule of an image folder: train/val/test by source group or by region band.

Splits are made before tiles are augmented, by source image (``split.by: source``, stratified by
class, every tile of one group in one split) or by region of each image (``split.by: region``);
each extra test set is a split ``test@<name>`` of its own. ``split_arrays`` then caps, shuffles
and augments each split and writes the manifest rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...checks import int_value
from ...errors import ConfigError, require
from ..layout import EXTRA_TEST, SPLITS
from ..splits import stratified_sample
from .augment import augment
from .leakage import content_hash

MANIFEST_COLUMNS = [
    "split",
    "source",
    "group",
    "page",
    "region",
    "top",
    "left",
    "height",
    "width",
    "rotation",
    "flip",
    "label",
    "class",
    "content_hash",
]


def assign_groups(groups: list[str], labels: list[int], fractions: list[float], seed: int) -> dict[str, int]:
    """Split index (0 train, 1 val, 2 test) per group, stratified by class: each class's groups are
    shuffled (seeded) and cut by the fractions, at least one group per split."""
    by_class: dict[int, list[str]] = {}
    for group, label in sorted(set(zip(groups, labels, strict=True))):
        by_class.setdefault(label, []).append(group)
    assignment = {}
    for label, members in sorted(by_class.items()):
        n = len(members)
        rng = np.random.default_rng([seed, label])
        order = [members[i] for i in rng.permutation(n)]
        n_val = max(1, round(fractions[1] * n))
        n_test = max(1, round(fractions[2] * n))
        n_train = n - n_val - n_test
        if n_train < 1:
            return {"too_few": label}  # type: ignore[dict-item]
        for i, group in enumerate(order):
            assignment[group] = 0 if i < n_train else 1 if i < n_train + n_val else 2
    return assignment


def assign_splits(frame: pd.DataFrame, classes: list[str], dataset, seed: int) -> list[str]:
    """Set ``frame.split``: train/val/test by source group or region band, ``test@<name>`` for the
    extra test sets; returns the names of the extra test sets that have tiles."""
    main = frame[frame.test_set.isna()]
    if dataset.split.by == "source":
        assignment = assign_groups(
            main.group.tolist(), main.label.tolist(), list(dataset.split.fractions), seed
        )
        if "too_few" in assignment:
            label = assignment["too_few"]
            raise ConfigError(
                f"dataset.split.by=source: class {classes[label]!r} has too few source images "
                f"({main[main.label == label].group.nunique()}) for a train/val/test split "
                "by image: add images or use dataset.split.by=region"
            )
        split_index = main.group.map(assignment)
    else:
        split_index = main.region
    frame["split"] = None
    frame.loc[main.index, "split"] = split_index.map(lambda i: SPLITS[int(i)])
    extras = sorted(frame.test_set.dropna().unique())
    for name in dataset.extra_test_sets or {}:
        require(
            name in extras,
            f"dataset.extra_test_sets.{name}: no usable image in "
            f"{dataset.extra_test_sets[name]} (see the skipped files above): "
            "fix the path or the files",
        )
    extra = frame.test_set.notna()
    frame.loc[extra, "split"] = EXTRA_TEST + frame.test_set[extra]
    return extras


def _cap(frame: pd.DataFrame, size, key: str, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``size`` tiles (stratified by class; whole tiles, before augmenting); null = all."""
    if size is not None:
        int_value(size, f"params.yaml: {key}", low=1, what="a positive integer or null (all tiles)")
    if size is None or size >= len(frame):
        return frame
    keep = stratified_sample(frame["label"].to_numpy(), np.arange(len(frame)), size, rng)
    return frame.iloc[keep]


def split_arrays(
    frame: pd.DataFrame, images: np.ndarray, classes: list[str], splits: list[str], opts: dict, cfg
) -> tuple[dict, pd.DataFrame]:
    """(images, labels) per split, capped, shuffled and augmented (training only, by default), and
    the manifest: one row per example, with its content hash."""
    rng = np.random.default_rng(cfg.prepare.split_seed)
    arrays, manifests = {}, []
    for split in splits:
        part = frame[frame["split"] == split]
        missing = sorted(set(classes) - {classes[i] for i in part.label})
        require(
            split not in SPLITS or not missing,
            f"dataset.split.fractions={list(cfg.dataset.split.fractions)}: split {split!r} has no "
            f"tile of class(es) {missing}: widen its fraction or use smaller tiles",
        )
        if split in SPLITS:
            part = _cap(part, cfg.prepare.get(f"{split}_size"), f"prepare.{split}_size", rng)
        part = part.iloc[rng.permutation(len(part))]  # mixed classes (the report shows the first test images)
        x = images[part.index.to_numpy()]
        augmented = split in opts["augment_splits"]
        copies = augment(x, opts["rotations"], opts["flips"]) if augmented else [(0.0, "none", x)]
        arrays[split] = (
            np.concatenate([c for _, _, c in copies]),
            np.tile(part.label.to_numpy(np.int64), len(copies)),
        )
        for angle, flip, c in copies:
            manifests.append(
                part.assign(split=split, rotation=angle, flip=flip, content_hash=[content_hash(t) for t in c])
            )
    manifest = pd.concat(manifests, ignore_index=True)
    manifest["class"] = [classes[i] for i in manifest.label]
    return arrays, manifest[MANIFEST_COLUMNS]
