"""Stage ``prepare``: raw dataset -> data/prepared/<dataset>/ (train/val/test splits).

Deterministic: the same params give byte-identical ``.npy`` files, ``manifest.csv`` and
``meta.json`` (whose ``data_version`` hash the training runs record); the file names are
``data/layout.py``.

    python -m overfitlab.prepare dataset=fashion_mnist prepare.train_size=500
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from .checks import int_value, is_int, is_number
from .data import image_folder, layout
from .data.datasets import RawDataset, load_raw
from .data.splits import stratified_sample
from .errors import exit_on_config_error, require
from .files import atomic_directory, atomic_write_json, sha256_files
from .project import conf_dir
from .study import preflight


def _check_size(key: str, value, available: int, allow_null: bool = True, low: int = 1) -> int:
    if value is None and allow_null:
        return available
    return int_value(
        value,
        f"params.yaml: {key}",
        low,
        available,
        f"an integer from {low} to {available} (the images available for it)"
        + (" or null for all" if allow_null else ""),
    )


def _subset(key: str, size, labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices of ``pool``, stratified by class; all of it (no draw) for null or its full size."""
    size = _check_size(key, size, len(pool))
    return pool if size == len(pool) else stratified_sample(labels, pool, size, rng)


def select_classes(raw: RawDataset, classes) -> tuple[RawDataset, list[int]]:
    """Keep only ``classes`` (indices or names), relabelled 0..k-1 in the order given."""
    n = len(raw.class_names)
    if classes is None:
        return raw, list(range(n))
    wanted = []
    for c in classes:
        index = raw.class_names.index(c) if isinstance(c, str) and c in raw.class_names else c
        require(
            is_int(index) and 0 <= index < n,
            f"params.yaml: prepare.classes has {c!r}; allowed: 0..{n - 1} or names {raw.class_names}",
        )
        wanted.append(index)
    require(
        len(set(wanted)) >= 2,
        f"params.yaml: prepare.classes={list(classes)} must name at least two distinct classes",
    )
    remap = np.full(n, -1, np.int64)
    remap[wanted] = np.arange(len(wanted))

    def keep(images, labels):
        mask = remap[labels] >= 0
        return images[mask], remap[labels[mask]], np.flatnonzero(mask)

    tr_x, tr_y, tr_i = keep(raw.train_images, raw.train_labels)
    te_x, te_y, te_i = keep(raw.test_images, raw.test_labels)
    subset = RawDataset(tr_x, tr_y, te_x, te_y, [raw.class_names[i] for i in wanted], raw.source)
    subset.source_index = {"train": tr_i, "test": te_i}  # type: ignore[attr-defined]
    return subset, wanted


def rotate_copies(images: np.ndarray, angles: list[float]) -> np.ndarray:
    """Rotated copies of uint8 images (bilinear, zero fill), stacked angle after angle."""
    import torch
    from torchvision.transforms.functional import InterpolationMode, rotate

    tensor = torch.from_numpy(images)
    return np.concatenate(
        [rotate(tensor, float(a), interpolation=InterpolationMode.BILINEAR).numpy() for a in angles]
    )


def build_splits(raw: RawDataset, cfg: DictConfig) -> tuple[dict, pd.DataFrame, list[str]]:
    p = cfg.prepare
    rotations = list(p.rotations or [])
    for a in rotations:
        require(
            is_number(a) and -360 <= a <= 360,
            f"params.yaml: prepare.rotations has {a!r}; use angles in degrees, e.g. [-5, 5]",
        )
    int_value(p.split_seed, "params.yaml: prepare.split_seed")
    raw, kept = select_classes(raw, OmegaConf.to_container(p.classes) if p.classes is not None else None)
    source_index = getattr(
        raw,
        "source_index",
        {"train": np.arange(len(raw.train_labels)), "test": np.arange(len(raw.test_labels))},
    )
    rng = np.random.default_rng(p.split_seed)
    n_train_pool = len(raw.train_labels)
    # 0: no validation split (as the source studies trained: nothing is chosen on validation)
    val_size = _check_size("prepare.val_size", p.val_size, n_train_pool - 1, allow_null=False, low=0)
    val_idx = stratified_sample(raw.train_labels, np.arange(n_train_pool), val_size, rng)
    rest = np.setdiff1d(np.arange(n_train_pool), val_idx)
    train_idx = _subset("prepare.train_size", p.train_size, raw.train_labels, rest, rng)
    all_test = np.arange(len(raw.test_labels))
    test_idx = _subset("prepare.test_size", p.test_size, raw.test_labels, all_test, rng)

    arrays = {
        "train": (raw.train_images[train_idx], raw.train_labels[train_idx]),
        "val": (raw.train_images[val_idx], raw.train_labels[val_idx]),
        "test": (raw.test_images[test_idx], raw.test_labels[test_idx]),
    }
    rows = [
        pd.DataFrame(
            {
                "split": split,
                "source": source,
                "source_index": source_index[source][idx],
                "label": labels[idx],
                "rotation": 0.0,
            }
        )
        for split, source, idx, labels in [
            ("train", "train", train_idx, raw.train_labels),
            ("val", "train", val_idx, raw.train_labels),
            ("test", "test", test_idx, raw.test_labels),
        ]
    ]
    if rotations:
        x, y = arrays["train"]
        arrays["train"] = (np.concatenate([x, rotate_copies(x, rotations)]), np.tile(y, 1 + len(rotations)))
        base = rows[0]
        rows[0] = pd.concat([base] + [base.assign(rotation=float(a)) for a in rotations], ignore_index=True)
    return arrays, pd.concat(rows, ignore_index=True), raw.class_names


def write_prepared(
    out_dir: Path,
    arrays: dict,
    manifest: pd.DataFrame,
    class_names: list[str],
    cfg,
    facts: dict | None = None,
) -> dict:
    """Write all files into a temp dir that replaces ``out_dir`` only when complete.

    ``facts`` (image folders) adds extra test splits ``test@<name>``, the skipped-file log
    ``skipped.csv`` and the skip, background and leakage facts to meta.json.
    """
    with atomic_directory(out_dir) as tmp:
        for split in arrays:
            images, labels = arrays[split]
            np.save(layout.images_file(tmp, split), np.ascontiguousarray(images, dtype=np.uint8))
            np.save(layout.labels_file(tmp, split), np.ascontiguousarray(labels, dtype=np.int64))
        buffer = io.StringIO()
        manifest.to_csv(buffer, index_label="example")
        layout.manifest_file(tmp).write_text(buffer.getvalue())
        images = arrays["train"][0]
        meta = {
            "dataset": cfg.dataset.name,
            "class_names": class_names,
            "in_channels": int(images.shape[1]),
            "image_size": int(images.shape[2]),
            "counts": {s: int(len(arrays[s][1])) for s in arrays},
            "class_counts": {
                s: np.bincount(arrays[s][1], minlength=len(class_names)).tolist() for s in arrays
            },
            "prepare": OmegaConf.to_container(cfg.prepare, resolve=True),
            "data_version": sha256_files(layout.versioned_files(tmp))[:16],
        }
        if facts is not None:
            skipped = pd.DataFrame(facts["skipped"], columns=["file", "reason"])
            layout.skipped_file(tmp).write_text(skipped.to_csv(index=False))
            dataset_config = OmegaConf.to_container(cfg.dataset, resolve=True)
            dataset_config.pop("workers")  # speed only: the output is the same for any count
            meta.update(facts, dataset_config=dataset_config)
        atomic_write_json(layout.meta_file(tmp), meta)
    return meta


@exit_on_config_error
def prepare(cfg: DictConfig) -> dict:
    loader = cfg.dataset.get("loader", "torchvision")
    require(
        loader in ("torchvision", "image_folder"),
        f"dataset.loader={loader!r} must be torchvision or image_folder "
        f"(conf/dataset/{cfg.dataset.name}.yaml)",
    )
    facts, origin = None, cfg.dataset.get("root")
    if loader == "image_folder":
        if cfg.dataset.get("build") and not Path(cfg.dataset.root).exists():
            from hydra.utils import instantiate

            print(f"building the raw folders of {cfg.dataset.name} ({cfg.dataset.build._target_})")
            instantiate(cfg.dataset.build)
        arrays, manifest, class_names, facts = image_folder.build(cfg)
    else:
        raw = load_raw(cfg.dataset)
        origin = raw.source
        arrays, manifest, class_names = build_splits(raw, cfg)
    meta = write_prepared(Path(cfg.out_dir), arrays, manifest, class_names, cfg, facts)
    print(
        f"prepared {cfg.dataset.name} (from {origin}): "
        + ", ".join(f"{s} {n}" for s, n in meta["counts"].items())
        + f" images, {len(class_names)} classes, data_version {meta['data_version']} -> {cfg.out_dir}"
    )
    if facts is not None:
        unreadable = [s for s in facts["skipped"] if not s["reason"].startswith("ignored")]
        leak = facts["leakage"]
        print(
            f"  {facts['source_files']} source files; {len(unreadable)} skipped, "
            f"{len(facts['skipped']) - len(unreadable)} ignored (list: {layout.skipped_file(cfg.out_dir)}); "
            f"background tiles dropped: {sum(facts['background_dropped'].values())}; leakage check: "
            f"{leak['shared_contents']} tile contents shared between splits"
        )
        for s in unreadable:
            print(f"  skipped {s['file']}: {s['reason']}")
    return meta


# params.yaml is read from the working directory (the study), conf/ from the project root.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="prepare")
def main(cfg: DictConfig) -> None:
    """One prepared variant per combination of the study's ``prepare.*`` axis values (one without)."""
    from .axes import PREPARE, combinations

    study_axes = OmegaConf.to_container(cfg.study.axes) if OmegaConf.select(cfg, "study.axes") else {}
    for values in combinations({k: v for k, v in study_axes.items() if k.startswith(PREPARE)}):
        variant = cfg.copy()
        for key, value in values.items():
            OmegaConf.update(variant, key, value, merge=False)
        prepare(variant)


if __name__ == "__main__":
    preflight(sys.argv[1:], command_line_axes=False)
    main()
