"""Class-stratified sampling shared by the torchvision and the image-folder paths of ``prepare``."""

from __future__ import annotations

import numpy as np


def stratified_sample(
    labels: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``size`` indices from ``pool`` with class proportions kept (largest remainders), sorted."""
    classes, counts = np.unique(labels[pool], return_counts=True)
    exact = counts * size / counts.sum()
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: size - take.sum()]] += 1
    chosen = [rng.permutation(pool[labels[pool] == c])[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))
