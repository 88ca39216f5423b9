"""Randomization controls (Zhang et al. 2017): can the network fit data that has nothing to learn?

Applied to the training split of a prepared dataset, at training time, fixed by ``data_seed``:

* ``label_noise`` p: exactly round(p * N) training labels, chosen at random, are replaced by
  uniformly random labels (which may, by chance, equal the true one; p = 1 is random labels).
* ``pixels``: ``shuffled`` applies one fixed pixel permutation to every image (training,
  validation and test alike, so the test set shares the structure that is left); ``random``
  gives each training image its own permutation; ``gaussian`` replaces each training image by
  Gaussian noise with the training set's per-channel mean and standard deviation.

Validation and test labels are never changed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import require

PIXEL_CONTROLS = ("none", "shuffled", "random", "gaussian")


def check(label_noise, pixels, noise_key: str = "train.label_noise") -> None:
    require(isinstance(label_noise, (int, float)) and not isinstance(label_noise, bool) and 0 <= label_noise <= 1,
            f"{noise_key}={label_noise!r} must be a fraction from 0 to 1")
    require(pixels in PIXEL_CONTROLS, f"train.pixels={pixels!r}; allowed: {list(PIXEL_CONTROLS)}")


def control_tag(label_noise: float, pixels: str) -> str:
    """Suffix that names a controlled variant of a dataset ('' for the real data)."""
    parts = ([f"labels{float(label_noise):g}"] if label_noise else []) + ([pixels] if pixels != "none" else [])
    return "".join(f"+{p}" for p in parts)


def corrupt_labels(labels: torch.Tensor, num_classes: int, fraction: float,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace exactly round(fraction * N) labels by uniform random ones; returns (labels, mask)."""
    n = len(labels)
    chosen = rng.permutation(n)[: int(round(fraction * n))]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.from_numpy(chosen)] = True
    new = labels.clone()
    new[mask] = torch.from_numpy(rng.integers(0, num_classes, len(chosen))).to(labels.dtype)
    return new, mask


def shuffle_pixels(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Apply one permutation of the H*W pixel positions (all channels alike) to every image."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, permutation].reshape(n, c, h, w)


def random_pixels(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Give every image its own permutation of the H*W pixel positions."""
    n, c, h, w = images.shape
    order = torch.from_numpy(np.stack([rng.permutation(h * w) for _ in range(n)]))
    return torch.gather(images.reshape(n, c, h * w), 2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def gaussian_like(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian noise images with the per-channel mean and standard deviation of ``images``."""
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True)
    noise = torch.from_numpy(rng.standard_normal(images.shape).astype(np.float32))
    return noise * std + mean


def apply_controls(images: dict, labels: dict, num_classes: int, label_noise: float, pixels: str,
                   data_seed: int) -> torch.Tensor:
    """Apply the controls in place to the split dicts; returns the corrupted-label mask of train."""
    check(label_noise, pixels)
    rng = np.random.default_rng(data_seed)
    mask = torch.zeros(len(labels["train"]), dtype=torch.bool)
    if label_noise:
        labels["train"], mask = corrupt_labels(labels["train"], num_classes, label_noise, rng)
    if pixels == "shuffled":
        h, w = images["train"].shape[2:]
        permutation = torch.from_numpy(rng.permutation(h * w))
        for split in images:  # the same permutation everywhere
            images[split] = shuffle_pixels(images[split], permutation)
    elif pixels == "random":
        images["train"] = random_pixels(images["train"], rng)
    elif pixels == "gaussian":
        images["train"] = gaussian_like(images["train"], rng)
    return mask
