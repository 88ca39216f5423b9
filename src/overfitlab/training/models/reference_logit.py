"""A dense network with one output logit fewer than classes: the first class's logit is fixed at 0.

Keras' binary classifiers end in ``Dense(1)`` trained with binary cross-entropy on that one logit z
(the MNIST lesson's 0-vs-1 network: ``Dense(2, sigmoid)``, ``Dense(1)``,
``BinaryCrossentropy(from_logits=True)``). The pipeline trains every model with softmax
cross-entropy over K logits; over the logits (0, z) that is exactly the binary cross-entropy of z
(softmax(0, z) = (1 - sigmoid(z), sigmoid(z))), and argmax picks class 1 where z > 0, as the
source's ``0 if y < 0 else 1``. So this family reproduces the source's network, its parameter
count (one output unit, not two) and its loss. For K > 2 classes it is the multinomial logit with
the first class as reference (K - 1 free logits).

One model family per file: a run hashes only its own family's code (identity.numerics_code)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import dense_stack


class ReferenceLogitMLP(nn.Module):
    """Flatten + dense layers + ``num_classes - 1`` output units; the logit of class 0 is 0."""

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
        if num_classes < 2:
            raise ValueError(f"ReferenceLogitMLP needs at least two classes, got {num_classes}")
        body, width = dense_stack(in_channels * image_size * image_size, list(hidden), activation, dropout)
        self.net = nn.Sequential(nn.Flatten(), body, nn.Linear(width, num_classes - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        free = self.net(x)
        return torch.cat([torch.zeros_like(free[..., :1]), free], dim=-1)
