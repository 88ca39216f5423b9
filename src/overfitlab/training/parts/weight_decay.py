"""Weight decay of every conv and dense layer's weights (not biases, not batch-norm parameters).

* ``l2``: adds ``strength * sum(w ** 2)`` to the training loss, exactly Keras'
  ``kernel_regularizer=l2(strength)`` on each layer;
* ``decoupled``: shrinks the same weights by ``lr * strength`` before each optimizer update,
  apart from the gradient (Loshchilov & Hutter's AdamW with Adam).
"""

from __future__ import annotations

import torch
from torch import nn

DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
MODES = ("l2", "decoupled")


def decayed_weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, DECAYED)]


class WeightDecay:
    DECLARED_DEFAULTS = {"strength": 0.0, "mode": "l2"}

    def __init__(self, strength: float, mode: str = "l2", **_) -> None:
        self.strength, self.mode = float(strength), mode
        self.active = self.strength > 0

    def penalty(self, net: nn.Module) -> torch.Tensor | None:
        if self.mode != "l2":
            return None
        return self.strength * torch.stack([w.square().sum() for w in decayed_weights(net)]).sum()

    @torch.no_grad()
    def before_step(self, optimizer, net: nn.Module) -> None:
        if self.mode == "decoupled":
            lr = optimizer.param_groups[0]["lr"]
            for weight in decayed_weights(net):
                weight.mul_(1 - lr * self.strength)
