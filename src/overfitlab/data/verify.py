"""The prepared data a run trains on is the data its records name: its arrays are checked against
``meta.json``'s ``data_version`` (their hash, written by the prepare stage) before training.

A prepared file edited, truncated or deleted after prepare would otherwise train a run on other data
than the ``data_version`` it records. Hashing the arrays costs little next to training (measured in
benchmarks/README.md, "Integrity checks").
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..files import sha256_files
from . import layout

FIX = "run the prepare stage again (dvc repro prepare)"


def verify_prepared(directory: str | Path) -> dict:
    """``meta.json`` of ``directory`` once its arrays match its ``data_version``; else one line."""
    directory = Path(directory)
    meta_file = layout.meta_file(directory)
    try:
        meta = json.loads(meta_file.read_text())
        expected = meta["data_version"]
    except FileNotFoundError:
        raise ConfigError(f"{meta_file} not found: {FIX}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{meta_file} is unreadable or has no data_version: {FIX}") from None
    files = layout.versioned_files(directory)
    missing = [
        f
        for split in meta.get("counts", {})  # every split prepare wrote
        for f in (layout.images_file(directory, split), layout.labels_file(directory, split))
        if not f.exists()
    ]
    if missing or not layout.manifest_file(directory).exists():
        raise ConfigError(f"{(missing or [layout.manifest_file(directory)])[0]} is missing: {FIX}")
    if sha256_files(files)[:16] != expected:
        names = ", ".join(f.name for f in files)
        raise ConfigError(
            f"{directory}: the prepared files ({names}) do not match meta.json's data_version "
            f"{expected} (changed after prepare): {FIX}"
        )
    return meta
