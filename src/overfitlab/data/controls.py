"""Randomization controls (Zhang et al. 2017): can the network fit data that has nothing to learn?

Applied to the training split of a prepared dataset, at training time, fixed by ``data_seed``:

* ``label_noise`` p: exactly round(p * N) training labels, chosen at random, are given a new
  label, drawn by ``label_noise_mode``:

  - ``other`` (the default): uniformly from the K - 1 other classes, so p is the share of wrong
    labels, what "20 % label noise" is read as (symmetric label noise).
  - ``uniform``: uniformly from all K classes, as Zhang et al. did; a draw may return the true
    label, so only about p (K - 1) / K of the labels end up wrong. p = 1 is then "random labels":
    labels independent of the images. (With ``other``, p = 1 makes every label wrong, which is not
    random: with two classes it is a swap the network can learn.)

  Either way the mask returned marks the labels that differ from the original ones, and the share
  actually changed is reported (``LabelNoise``).
* ``pixels``: ``shuffled`` applies one fixed pixel permutation to every image (training,
  validation and test alike, so the test set shares the structure that is left); ``random``
  gives each training image its own permutation; ``gaussian`` replaces each training image by
  Gaussian noise with the training set's per-channel mean and standard deviation.

Validation and test labels are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import choice, int_value
from ..checks import fraction as fraction_value

PIXEL_CONTROLS = ("none", "shuffled", "random", "gaussian")
LABEL_NOISE_MODES = ("other", "uniform")


def check(label_noise, pixels, noise_key: str = "train.label_noise", label_noise_mode: str = "other") -> None:
    fraction_value(label_noise, noise_key)
    choice(pixels, "train.pixels", PIXEL_CONTROLS)
    choice(label_noise_mode, "train.label_noise_mode", LABEL_NOISE_MODES)


def check_control(control) -> None:
    """The run config's ``control`` section (label_noise, label_noise_mode, pixels, data_seed)."""
    mode = control.get("label_noise_mode", "other")
    check(control["label_noise"], control["pixels"], label_noise_mode=mode)
    int_value(control["data_seed"], "train.data_seed", low=0)


def control_tag(label_noise: float, pixels: str) -> str:
    """Suffix that names a controlled variant of a dataset ('' for the real data).

    The label-noise mode is not in it: like the learning rate, it is a setting of the run (in its
    config and config hash), fixed per study, so the run directories of a study keep their names.
    """
    parts = [f"labels{float(label_noise):g}"] if label_noise else []
    parts += [pixels] if pixels != "none" else []
    return "".join(f"+{p}" for p in parts)


@dataclass(frozen=True)
class LabelNoise:
    """Training labels after the label-noise control, and which of them it changed."""

    original: torch.Tensor  # the prepared labels
    labels: torch.Tensor  # what training sees
    drawn: torch.Tensor  # bool: chosen for a new label (round(p * N) of them)
    changed: torch.Tensor  # bool: the label differs from the original (with ``uniform``, fewer than drawn)
    mode: str

    @property
    def changed_share(self) -> float:
        """The share of training labels that are wrong: p with ``other``, about p (K-1)/K with ``uniform``."""
        return int(self.changed.sum()) / len(self.changed) if len(self.changed) else 0.0

    def record(self) -> dict:
        """What a run records about its labels (done.json, MLflow)."""
        return {
            "label_noise_mode": self.mode,
            "labels_drawn": int(self.drawn.sum()),
            "labels_changed": int(self.changed.sum()),
            "labels_changed_share": round(self.changed_share, 6),
        }

    def table(self):
        """One row per training example (``train_labels.csv``): ``corrupted`` = label changed."""
        import pandas as pd

        return pd.DataFrame(
            {
                "example": range(len(self.labels)),
                "original_label": self.original.numpy(),
                "label": self.labels.numpy(),
                "drawn": self.drawn.numpy(),
                "corrupted": self.changed.numpy(),
            }
        )


def corrupt_labels(
    labels: torch.Tensor, num_classes: int, fraction: float, rng: np.random.Generator, mode: str = "other"
) -> LabelNoise:
    """Give exactly round(fraction * N) labels, chosen at random, a new label drawn by ``mode``."""
    n = len(labels)
    drawn = torch.zeros(n, dtype=torch.bool)
    if not fraction:  # no draw at all: the pixel controls then get the same random stream as ever
        return LabelNoise(labels, labels.clone(), drawn, drawn.clone(), mode)
    # Sorted, so that the new labels land in index order (as in earlier versions: same labels).
    chosen = torch.from_numpy(np.sort(rng.permutation(n)[: int(round(fraction * n))]))
    drawn[chosen] = True
    if mode == "uniform":
        new = torch.from_numpy(rng.integers(0, num_classes, len(chosen)))
    else:  # one of the K - 1 other classes: skip over the true one
        offset = torch.from_numpy(rng.integers(0, num_classes - 1, len(chosen)))
        new = offset + (offset >= labels[chosen]).long()
    result = labels.clone()
    result[chosen] = new.to(labels.dtype)
    return LabelNoise(labels, result, drawn, result != labels, mode)


def shuffle_pixels(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Apply one permutation of the H*W pixel positions (all channels alike) to every image."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, permutation].reshape(n, c, h, w)


def random_pixels(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Give every image its own permutation of the H*W pixel positions."""
    n, c, h, w = images.shape
    order = torch.from_numpy(np.stack([rng.permutation(h * w) for _ in range(n)]))
    flat = images.reshape(n, c, h * w)
    return torch.gather(flat, 2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def gaussian_like(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian noise images with the per-channel mean and standard deviation of ``images``."""
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True)
    noise = torch.from_numpy(rng.standard_normal(images.shape).astype(np.float32))
    return noise * std + mean


def apply_controls(
    images: dict,
    labels: dict,
    num_classes: int,
    label_noise: float,
    pixels: str,
    data_seed: int,
    label_noise_mode: str = "other",
) -> LabelNoise:
    """Apply the controls in place to the split dicts; returns what the label noise did to train."""
    check_control(
        {
            "label_noise": label_noise,
            "pixels": pixels,
            "label_noise_mode": label_noise_mode,
            "data_seed": data_seed,
        }
    )
    rng = np.random.default_rng(data_seed)
    noise = corrupt_labels(labels["train"], num_classes, label_noise, rng, label_noise_mode)
    labels["train"] = noise.labels
    if pixels == "shuffled":
        h, w = images["train"].shape[2:]
        permutation = torch.from_numpy(rng.permutation(h * w))
        for split in images:  # the same permutation everywhere
            images[split] = shuffle_pixels(images[split], permutation)
    elif pixels == "random":
        images["train"] = random_pixels(images["train"], rng)
    elif pixels == "gaussian":
        images["train"] = gaussian_like(images["train"], rng)
    return noise
