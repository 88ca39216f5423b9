"""Label smoothing of the training loss: cross-entropy against ``(1 - amount)`` on the label plus
``amount / K`` on every class (Szegedy et al. 2016). Training only: every evaluation loss, and so
``val_loss`` / ``test_loss``, stays the plain cross-entropy; ``train_loss`` is the smoothed loss
trained on."""

from __future__ import annotations

import torch
from torch import nn


class LabelSmoothing:
    DECLARED_DEFAULTS = {"amount": 0.0}

    def __init__(self, amount: float, **_) -> None:
        self.amount = float(amount)
        self.active = self.amount > 0

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=self.amount)
