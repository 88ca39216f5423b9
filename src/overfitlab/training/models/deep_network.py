"""The microscopy study's deep network: shared-weight repeated convolutions.

One model family per file: a run hashes only its own family's code (identity.numerics_code)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import dense_stack, pool_fits


class DeepNetwork(nn.Module):
    """The microscopy study's deep network, with its shared-weight repeated convolutions.

    entry conv16; conv16 applied twice (one module, shared weights), each followed by a pool;
    conv32, pool; conv32_2 applied twice (shared); pool; conv64; conv64_2 applied twice (shared),
    each followed by a pool; dense 512 (optionally dense ``extra_dense``), each followed by dropout
    ``dropout`` when above 0; output.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        extra_dense: int | None = None,
        min_pool_size: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.entry_conv = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.conv16 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv32 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv32_2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv64 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv64_2 = nn.Conv2d(64, 64, 3, padding=1)
        # Decide once, from the input size, which of the six pools survive.
        self.pools: list[bool] = []
        size = image_size
        for _ in range(6):
            keep = pool_fits(size, 2, 2, min_pool_size)
            self.pools.append(keep)
            size = size // 2 if keep else size
        hidden = [512] + ([extra_dense] if extra_dense else [])
        head, width = dense_stack(64 * size * size, hidden, "relu", dropout)
        self.head = nn.Sequential(nn.Flatten(), head, nn.Linear(width, num_classes))

    def _pool(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return nn.functional.max_pool2d(x, 2) if self.pools[index] else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = nn.functional.relu
        out = relu(self.entry_conv(x))
        for i in range(2):
            out = self._pool(relu(self.conv16(out)), i)
        out = self._pool(relu(self.conv32(out)), 2)
        for _ in range(2):
            out = relu(self.conv32_2(out))
        out = relu(self.conv64(self._pool(out, 3)))
        for i in range(2):
            out = self._pool(relu(self.conv64_2(out)), 4 + i)
        return self.head(out)
