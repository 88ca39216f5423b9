"""Augmented copies of tiles: rotations (reflected corners) and flips, made after splitting.

Copies are made of each split's own tiles only, so a rotated copy of a training tile can never be
in the test split.
"""

from __future__ import annotations

import numpy as np

FLIPS = {"horizontal": -1, "vertical": -2}  # flipped axis of a (C, H, W) tile


def rotate_reflect(images: np.ndarray, angle: float) -> np.ndarray:
    """Rotate (N, C, S, S) uint8 tiles about their centre, counter-clockwise, bilinear; the corners
    are filled by reflecting the tile itself (no black corners, no pixel from another tile)."""
    import torch
    import torch.nn.functional as F

    if angle == 0:
        return images.copy()
    x = torch.from_numpy(images).float()
    a = np.deg2rad(angle)
    theta = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def augment(
    images: np.ndarray, rotations: list[float], flips: list[str]
) -> list[tuple[float, str, np.ndarray]]:
    """(rotation, flip, copies) for every angle and every flip (``none`` first)."""
    copies = []
    for angle in rotations:
        rotated = rotate_reflect(images, float(angle))
        copies.append((float(angle), "none", rotated))
        copies += [
            (float(angle), flip, np.ascontiguousarray(np.flip(rotated, FLIPS[flip]))) for flip in flips
        ]
    return copies
