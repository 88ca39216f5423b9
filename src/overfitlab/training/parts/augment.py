"""Data augmentation drawn per training batch, on the batch tensor, in the training process.

``kind``: ``flip`` (each image mirrored left-right with probability 1/2), ``crop`` (zero-padded by
``padding`` pixels on each side, then cropped back to its size at a random offset: Zhang et al.
2017's "random crop"), ``crop_flip`` (both). The draws come from a generator seeded by the run's
seed and the epoch, so a run is reproducible and a resumed run draws what an uninterrupted one
does. Images keep their place in the batch: the per-example record stays each example's.
"""

from __future__ import annotations

import torch

KINDS = ("none", "flip", "crop", "crop_flip")


class Augment:
    DECLARED_DEFAULTS = {"kind": "none", "padding": 4}

    def __init__(self, kind: str = "none", padding: int = 4, seed: int = 0, **_) -> None:
        self.kind, self.padding, self.seed = kind, int(padding), int(seed)
        self.active = kind != "none"
        self.generator: torch.Generator | None = None

    def start_epoch(self, epoch: int, device: torch.device) -> None:
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        if "crop" in self.kind and self.padding:
            p = self.padding
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=self.generator, device=x.device)
            rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
            x = padded[
                torch.arange(n, device=x.device)[:, None, None, None],
                torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                rows,
                cols,
            ]
        if "flip" in self.kind:
            flip = torch.rand(n, generator=self.generator, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x
