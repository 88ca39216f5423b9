"""An epoch's on-device totals, shared by every measure: one small class for one run and for a
vectorized seed group alike.

Values are added on the device inside each step and read back once per epoch (no ``.item()`` per
step). A value may carry a leading seeds dimension (``training/module.py``'s ``SeedStack``): the
group's meter hands seed ``i`` its share (``meter.RunMeter.hand_out``), in the form one run would
have summed itself.
"""

from __future__ import annotations

import torch


class EpochSums:
    def __init__(self) -> None:
        self.totals: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach()
        self.totals[key] = self.totals[key] + value if key in self.totals else value.clone()

    def take(self) -> dict[str, torch.Tensor]:
        """The epoch's totals; the next epoch starts from nothing."""
        totals, self.totals = self.totals, {}
        return totals


def loader_totals(loss_sum: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """``[loss sum, correct, examples]`` of a batch (``hit``: (..., batch) bools), in the loss's dtype."""
    n = torch.full_like(loss_sum, hit.shape[-1])
    return torch.stack([loss_sum, hit.sum(-1).to(loss_sum.dtype), n], -1)
