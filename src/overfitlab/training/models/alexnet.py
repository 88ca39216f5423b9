"""The microscopy study's AlexNet clone, adapted to small inputs.

One model family per file: a run hashes only its own family's code (identity.numerics_code)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import dense_stack, pool_fits


class AlexNet(nn.Module):
    """AlexNet-style network with batch norm in place of local response normalization.

    Small inputs (below 64 px) get a 3x3 stride-1 first convolution instead of 11x11 stride 4,
    and pools that would shrink the map below ``min_pool_size`` are dropped.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        dense_width: int = 4096,
        dropout: float = 0.5,
        min_pool_size: int = 2,
    ):
        super().__init__()
        small = image_size < 64
        first = nn.Conv2d(
            in_channels, 96, 3 if small else 11, stride=1 if small else 4, padding=1 if small else 2
        )
        size = image_size if small else (image_size + 4 - 11) // 4 + 1
        layers: list[nn.Module] = [first, nn.BatchNorm2d(96), nn.ReLU()]

        def maybe_pool() -> None:
            nonlocal size
            if pool_fits(size, 3, 2, min_pool_size):
                layers.append(nn.MaxPool2d(3, 2))
                size = (size - 3) // 2 + 1

        maybe_pool()
        layers += [nn.Conv2d(96, 256, 5, padding=2), nn.BatchNorm2d(256), nn.ReLU()]
        maybe_pool()
        for c_in, c_out in [(256, 384), (384, 384), (384, 256)]:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        maybe_pool()
        head, width = dense_stack(256 * size * size, [dense_width, dense_width], "relu", dropout)
        self.net = nn.Sequential(*layers, nn.Flatten(), head, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
