"""The training losses (``train.loss``): one per-example function for training and evaluation.

* ``cross_entropy``: softmax cross-entropy, the default.
* ``squared_error``: the squared distance between the logits and the one-hot label, summed over
  the classes: the loss Belkin et al. (2019) trained with to show double descent.
"""

from __future__ import annotations

import torch
from torch import nn

LOSSES = ("cross_entropy", "squared_error")


def per_example_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The loss of each example (batch, classes) -> (batch,)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(logits, y, reduction="none")
    target = nn.functional.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return (logits - target).square().sum(-1)
