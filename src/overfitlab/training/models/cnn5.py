"""The five-layer CNN of "Deep Double Descent" (Nakkiran et al. 2019/2021), its capacity set by one width.

Four 3x3 conv layers of k, 2k, 4k and 8k channels, each with batch norm and ReLU, max-pooled after
the second, third and fourth (as far as the input's size allows), a global max-pool, then one linear
layer: with ``k`` a study axis (``model.width``) it spans well below to well above the
interpolation threshold. One model family per file: a run hashes only its own family's code.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import pool_fits


class CNN5(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = image_size, in_channels
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if i > 0 and pool_fits(size, 2, 2, 1):
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
