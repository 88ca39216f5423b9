"""What a run measures while it trains, kept apart from the step that trains it.

The step (``training/module.py``) hands each training chunk's logits and each evaluation batch to
a ``RunMeter``, which passes them to every measure of the registry (``measures.MEASURES``). At an
epoch's end the meter turns the sums into the epoch's row (``close_epoch``) and, when the epoch's
losses were finite, has the measures keep the epoch's records (``keep_epoch``). The meter of a
vectorized seed group's training side sums with a leading seeds dimension and hands each seed's
share to that seed's own meter (``hand_out``), so both paths compute the same numbers.

A measure is a class taking keyword arguments (``loss``, ``n_train``) with any of the hooks
``on_train(sums, hit=, index=, loss_sum=, corrupted=, **extra)``, ``on_eval(sums, name, logits, y)``,
``close(totals, row)`` (add its columns to the row, set aside the epoch's record), ``keep(weights)``
and ``state()`` / ``restore(state)`` (what a checkpoint saves of its kept records).
"""

from __future__ import annotations

import torch

from .sums import EpochSums


class RunMeter:
    def __init__(self, loss: str, n_train: int) -> None:
        from . import MEASURES

        self.measures = {name: kind(loss=loss, n_train=n_train) for name, kind in MEASURES.items()}
        self.sums = EpochSums()

    def _each(self, hook: str):
        return [getattr(m, hook) for m in self.measures.values() if hasattr(m, hook)]

    def train(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor,
        loss_sum: torch.Tensor,
        corrupted: torch.Tensor | None = None,
        **extra,
    ) -> None:
        """Training minibatches (logits made before each one's update; ``index``: the examples'
        positions in the split; ``corrupted``: labels a control replaced; ``extra``: what an optional
        part of the step hands on, e.g. ``penalties``); (seeds, ...) for a vectorized group."""
        hit = logits.argmax(-1) == y
        for on_train in self._each("on_train"):
            on_train(self.sums, hit=hit, index=index, loss_sum=loss_sum, corrupted=corrupted, **extra)

    def eval(self, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        """One evaluation batch of loader ``name``."""
        for on_eval in self._each("on_eval"):
            on_eval(self.sums, name, logits, y)

    def hand_out(self, meters: list[RunMeter]) -> None:
        """Give each seed's meter its row of this (stacked) meter's sums, first (its columns then come
        in the order of a seed trained alone, whose training sums start each epoch)."""
        totals = self.sums.take()
        for i, meter in enumerate(meters):
            meter.sums.totals = {**{key: value[i] for key, value in totals.items()}, **meter.sums.totals}

    def close_epoch(self, epoch: int) -> dict:
        """The epoch's row (``epoch`` and every measure's columns); the sums start again from nothing."""
        row = {"epoch": epoch}
        totals = self.sums.take()
        for close in self._each("close"):
            close(totals, row)
        return row

    def keep_epoch(self, weights) -> None:
        """The closed epoch was finite: every measure keeps its record of it (``weights``: the net's
        parameters and buffers after the epoch)."""
        for keep in self._each("keep"):
            keep(weights)

    def state(self) -> dict:
        """What the kept epochs accumulated (for a checkpoint)."""
        return {name: m.state() for name, m in self.measures.items() if hasattr(m, "state")}

    def restore(self, state: dict) -> None:
        for name, m in self.measures.items():
            if hasattr(m, "restore") and name in state:
                m.restore(state[name])
