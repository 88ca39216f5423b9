"""The final test predictions: per test image [label, predicted class, confidence], from the last
epoch whose losses were finite (``test_predictions.npy``: the report's confusion matrix, the
calibration figure, the median seed's mistakes)."""

from __future__ import annotations

import torch


class TestPredictions:
    def __init__(self, **_) -> None:
        self.rows: list[torch.Tensor] = []  # the latest kept epoch's, per test batch
        self._epoch: list[torch.Tensor] = []
        self._closed: list[torch.Tensor] = []

    def on_eval(self, sums, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        if name == "test":
            confidence, predicted = logits.softmax(1).max(1)
            self._epoch.append(torch.stack([y.float(), predicted.float(), confidence], 1))

    def close(self, totals: dict, row: dict) -> None:
        self._closed, self._epoch = self._epoch, []

    def keep(self, weights) -> None:
        self.rows = self._closed

    def state(self) -> dict:
        return {"test_predictions": [t.cpu() for t in self.rows]}

    def restore(self, state: dict) -> None:
        self.rows = list(state["test_predictions"])
