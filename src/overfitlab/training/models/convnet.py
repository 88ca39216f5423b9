"""A small CNN family (the course's CNNs): conv blocks with optional pooling, then dense layers.

One model family per file: a run hashes only its own family's code (identity.numerics_code)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import dense_stack, pool_fits


class ConvNet(nn.Module):
    """conv(3x3, same) blocks, each optionally followed by 2x2 max-pool, then dense layers.

    Covers the CIFAR course's no-pooling CNN (the one that overfits), its conv-pool-dropout CNN,
    and the MNIST lesson's model D.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        channels: list[int],
        pool: bool,
        hidden: list[int],
        hidden_activation: str = "relu",
        dropout: float = 0.0,
        min_pool_size: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = image_size, in_channels
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            if pool and pool_fits(size, 2, 2, min_pool_size):
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        head, width = dense_stack(c_in * size * size, list(hidden), hidden_activation, dropout)
        self.net = nn.Sequential(*layers, nn.Flatten(), head, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
