"""The leakage check: no identical tile content in two splits, proven by content hashes.

Run on the final manifest (after splitting and augmenting), so it catches duplicate files and
flat background tiles that the split rule cannot see.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ...errors import require


def content_hash(tile: np.ndarray) -> str:
    return hashlib.sha256(tile.tobytes()).hexdigest()[:16]


def leakage_check(hashes: pd.Series, splits: pd.Series) -> dict:
    """Tiles whose exact content is in more than one split (by content hash), per pair of splits."""
    frame = pd.DataFrame({"hash": hashes.to_numpy(), "split": splits.to_numpy()}).drop_duplicates()
    shared = frame[frame.duplicated("hash", keep=False)]
    pairs: dict[str, int] = {}
    for _, group in shared.groupby("hash"):
        names = sorted(group["split"])
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pairs[f"{a} & {b}"] = pairs.get(f"{a} & {b}", 0) + 1
    return {
        "examples_checked": int(len(hashes)),
        "distinct_contents": int(frame["hash"].nunique()),
        "shared_contents": int(shared["hash"].nunique()),
        "pairs": dict(sorted(pairs.items())),
    }


def check_leaks(manifest: pd.DataFrame, on_leak: str) -> dict:
    """The leakage check of the manifest; a shared tile content stops the stage (``on_leak: error``)."""
    leak = leakage_check(manifest.content_hash, manifest.split)
    if leak["shared_contents"]:
        shared = manifest[manifest.content_hash.duplicated(keep=False)]
        example = shared.drop_duplicates(["content_hash", "split"])
        detail = (
            f"{leak['shared_contents']} tile content(s) in two splits ({leak['pairs']}), "
            f"e.g. {example.source.iloc[0]}"
        )
        require(
            on_leak == "warn",
            f"dataset.on_leak=error: {detail}: remove duplicate files, set "
            "dataset.split.group_pattern, or drop flat background tiles "
            "(dataset.background.min_std)",
        )
        print(f"warning: {detail}")
    return leak
