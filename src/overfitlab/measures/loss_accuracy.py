"""Loss and accuracy of every loader, every epoch.

* ``train_loss`` / ``train_acc``: running mean over the epoch's training batches, in training
  mode (dropout on, weights changing), i.e. what Keras prints; from the logits the step computes
  anyway, before each minibatch's update.
* ``val_*``, ``test_*``, ``train_eval_*``: eval-mode passes after the epoch; an image-folder
  dataset's extra test sets (loader ``test@<name>``) give ``test_acc/<name>``, ``test_loss/<name>``.
"""

from __future__ import annotations

import torch

from ..training.losses import per_example_loss
from .sums import EpochSums, loader_totals

KEY = "loader:"  # its sums: one per loader (train, val, test, test@<name>, train_eval)


class LossAccuracy:
    def __init__(self, loss: str, **_) -> None:
        self.loss = loss

    def on_train(self, sums: EpochSums, hit: torch.Tensor, loss_sum: torch.Tensor, **_) -> None:
        sums.add(KEY + "train", loader_totals(loss_sum, hit))

    def on_eval(self, sums: EpochSums, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        loss_sum = per_example_loss(logits, y, self.loss).sum()
        sums.add(KEY + name, loader_totals(loss_sum, logits.argmax(1) == y))

    def close(self, totals: dict, row: dict) -> None:
        for key, value in totals.items():
            if not key.startswith(KEY):
                continue
            loss, correct, n = value.tolist()
            base, _, test_set = key.removeprefix(KEY).partition(
                "@"
            )  # extra test set test@<name>: test_acc/<name>
            suffix = f"/{test_set}" if test_set else ""
            row[f"{base}_loss{suffix}"] = loss / n
            row[f"{base}_acc{suffix}"] = correct / n
