"""A fully connected network (the Fashion-MNIST notebook's and the course's dense networks).

One model family per file: a run hashes only its own family's code (identity.numerics_code)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import dense_stack


class MLP(nn.Module):
    """Flatten + dense layers: dense-256-sigmoid, MLP 300-100, models A, B and C."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        body, width = dense_stack(in_channels * image_size * image_size, list(hidden), activation, dropout)
        self.net = nn.Sequential(nn.Flatten(), body, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
