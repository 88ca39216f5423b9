"""``train_penalty``: the mean over the epoch's minibatches of the penalty an optional part added to
the training loss (weight decay ``l2``: ``strength * sum(w ** 2)``); ``train_loss`` stays the
data loss. Runs without such a part have no such column."""

from __future__ import annotations

import torch

from .sums import EpochSums

KEY = "penalty"


class Penalty:
    def __init__(self, **_) -> None:
        pass

    def on_train(self, sums: EpochSums, penalties: torch.Tensor | None = None, **_) -> None:
        if penalties is not None:
            sums.add(
                KEY,
                torch.stack([penalties.sum(), torch.tensor(float(len(penalties)), device=penalties.device)]),
            )

    def close(self, totals: dict, row: dict) -> None:
        if KEY in totals:
            total, steps = totals[KEY].tolist()
            row["train_penalty"] = total / steps
