"""The per-example record: for each epoch and training example, whether the training step
classified it correctly, from the logits the step computes anyway (training mode, before that
minibatch's update: the same predictions as ``train_acc``). Forgetting events and learning epochs
(Toneva et al. 2019) are computed from it by collect (``examples.py``); ~N/8 bytes per epoch."""

from __future__ import annotations

import torch

from .sums import EpochSums

KEY = "per_example"


class PerExample:
    def __init__(self, n_train: int, **_) -> None:
        self.n_train = n_train
        self.record: list[torch.Tensor] = []  # per kept epoch: (n_train,) bools
        self._closed: torch.Tensor | None = None

    def on_train(self, sums: EpochSums, hit: torch.Tensor, index: torch.Tensor, **_) -> None:
        # every example is seen once per epoch: the chunks' hits at their positions add up (or)
        hits = torch.zeros((*hit.shape[:-1], self.n_train), dtype=torch.bool, device=hit.device)
        sums.add(KEY, hits.scatter_(-1, index, hit))

    def close(self, totals: dict, row: dict) -> None:
        self._closed = totals.get(KEY)

    def keep(self, weights) -> None:
        if self._closed is not None:
            self.record.append(self._closed)

    def state(self) -> dict:
        return {"example_record": [t.cpu() for t in self.record]}

    def restore(self, state: dict) -> None:
        self.record = list(state["example_record"])
