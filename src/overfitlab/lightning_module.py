"""The LightningModule: one classifier, loss and accuracy on train, validation and test every epoch.

Metrics are summed on the device inside each step and read back once per epoch: no ``.item()``
or logger call per step. Which number is which:

* ``train_loss`` / ``train_acc``: running mean over the epoch's training batches, in training
  mode (dropout on, weights changing), i.e. what Keras prints.
* ``train_eval_loss`` / ``train_eval_acc``: an eval-mode pass over the whole training set after
  the epoch (only with ``trainer.train_eval_pass: true``).
* ``val_*`` and ``test_*``: eval-mode passes after the epoch. The test set is an extra evaluation
  loader, reported every epoch and never used to select anything.

Speed: Lightning's per-step machinery costs about a millisecond, as much as a whole small-model
step on a CPU. So one Lightning step receives a *chunk* of ``minibatches_per_step`` consecutive
minibatches and runs their optimizer steps itself (manual optimization): the same minibatches in
the same order with the same updates as one minibatch per step, with the overhead paid once per chunk.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn


class Classifier(L.LightningModule):
    def __init__(self, net: nn.Module, optimizer_factory, eval_names: list[str], batch_size: int):
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.batch_size = batch_size
        self.optimizer_factory = optimizer_factory
        self.eval_names = list(eval_names)  # names of the validation loaders, in order
        self.loss_fn = nn.CrossEntropyLoss(reduction="sum")
        self.history: list[dict] = []
        self.epoch_listeners: list = []  # called with each finished epoch's row (e.g. MLflow)
        self._sums: dict[str, list] = {}  # prefix -> [loss sum, correct count, examples]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self):
        return self.optimizer_factory(self.parameters())

    def _accumulate(self, prefix: str, logits: torch.Tensor, y: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """Add a batch's loss sum and correct count to the epoch's on-device totals (no host sync)."""
        correct = (logits.argmax(1) == y).sum()
        totals = self._sums.get(prefix)
        if totals is None:
            self._sums[prefix] = [loss_sum.detach().clone(), correct, len(y)]
        else:
            totals[0] += loss_sum.detach()
            totals[1] += correct
            totals[2] += len(y)

    def training_step(self, chunk, chunk_idx):
        optimizer = self.optimizers()
        x_chunk, y_chunk = chunk
        for x, y in zip(x_chunk.split(self.batch_size), y_chunk.split(self.batch_size)):
            logits = self.net(x)
            loss_sum = self.loss_fn(logits, y)
            optimizer.zero_grad()
            self.manual_backward(loss_sum / len(y))
            optimizer.step()
            self._accumulate("train", logits, y, loss_sum)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        logits = self.net(x)
        self._accumulate(self.eval_names[dataloader_idx], logits, y, self.loss_fn(logits, y))

    def on_train_epoch_end(self) -> None:
        # Lightning runs the validation loop before this hook, so all sums of the epoch are here.
        row = {"epoch": self.current_epoch + 1}
        for prefix, (loss, correct, n) in self._sums.items():
            row[f"{prefix}_loss"] = loss.item() / n
            row[f"{prefix}_acc"] = correct.item() / n
        self._sums = {}
        self.history.append(row)
        for listener in self.epoch_listeners:
            listener(row)
