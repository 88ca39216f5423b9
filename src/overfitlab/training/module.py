"""The LightningModule: the training step and the epoch loop, for one run and for a seed group.

This is the always-on core of a run's trajectory (it is in every run's code hash). What a run
*measures* (loss and accuracy per loader, calibration, the per-example record, test predictions,
weights digests) is not here: each step hands its logits to the run's meter
(``overfitlab.measures``, outside the code hash, each measure with its own fingerprint), which
sums on the device and turns the sums into the epoch's row once per epoch. An epoch whose losses
are not finite stops the run (diverged): its metrics stay those of the last finite epoch.

The loss (``train.loss``, losses.py): ``cross_entropy`` or ``squared_error``; training and every
evaluation use the same one.

Speed: Lightning's per-step machinery costs ~1.5 ms per step with automatic optimization and still
~0.15-0.2 ms with manual optimization and an empty step (its loops, hooks, progress bar), against
~1.2 ms for a whole step of the MLP at batch 20 on the project's 2-core CPU. So one Lightning step
receives a *chunk* of whole consecutive minibatches (about ``trainer.examples_per_step`` examples)
and runs their optimizer steps itself (manual optimization): the same minibatches in the same order
with the same updates as one minibatch per step, with the overhead paid once per chunk. Inside a
chunk each minibatch is stepped with the bare torch optimizer and ``loss.backward()``: Lightning's
per-call wrappers (hooks, precision plugin, profiler) add nothing in the plain 32-bit, one-device
training the trainer is built for (``fitting.make_trainer``) but cost a small model's step again
(benchmarks/README.md).
"""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import torch
from torch import nn

from ..measures.meter import RunMeter
from .losses import per_example_loss


class Classifier(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer_factory,
        eval_names: list[str],
        batch_size: int,
        n_train: int,
        loss: str = "cross_entropy",
        parts: list = (),
    ):
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        # The optional parts of training that are on (training/parts/: their hooks, by name).
        self._hooks = {
            hook: [getattr(p, hook) for p in parts if hasattr(p, hook)]
            for hook in ("start_epoch", "transform", "penalty", "before_step")
        }
        losses = [p.loss for p in parts if hasattr(p, "loss")]
        self._per_example_loss = losses[0] if losses else partial(per_example_loss, loss=loss)
        self.batch_size = batch_size
        self.optimizer_factory = optimizer_factory
        self.eval_names = list(eval_names)  # names of the validation loaders, in order
        self.loss = loss
        self.n_train = n_train
        self.meter = RunMeter(loss, n_train)  # what the run measures (overfitlab.measures)
        self.history: list[dict] = []  # one row per finished epoch whose losses are finite
        self.diverged_epoch: int | None = None  # first epoch whose loss was NaN or infinite
        self.on_stop_request = None  # set by a SeedStack: it decides when the group stops
        self.epoch_listeners: list = []  # called with each finished epoch's row (e.g. MLflow)

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    @property
    def example_record(self) -> list[torch.Tensor]:
        """Per kept epoch, which training examples the step got right (measures/per_example.py)."""
        return self.meter.measures["per_example"].record

    @property
    def test_predictions(self) -> list[torch.Tensor]:
        """The latest kept epoch's test predictions, rows [label, predicted, confidence]."""
        return self.meter.measures["test_predictions"].rows

    @property
    def weights_digests(self) -> list[str]:
        return self.meter.measures["weights_digest"].digests

    def request_stop(self) -> None:
        """Stop training after this epoch (a seed of a vectorized group: once every seed asked)."""
        if self.on_stop_request is not None:
            self.on_stop_request()
        elif self._trainer is not None:
            self.trainer.should_stop = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self):
        return self.optimizer_factory(self.parameters())

    def run_state(self) -> dict:
        """What the module has accumulated over the finished epochs (for a checkpoint); the weights and
        the optimizer are Lightning's to save."""
        return {
            "history": list(self.history),
            "diverged_epoch": self.diverged_epoch,
            "meter": self.meter.state(),
        }

    def restore_run_state(self, state: dict) -> None:
        """Continue from ``run_state()``'s result, as if the epochs it covers had just been trained."""
        self.history = list(state["history"])
        self.diverged_epoch = state["diverged_epoch"]
        self.meter.restore(state["meter"])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Eval-mode predicted classes of ``images`` (uint8 N x C x H x W, on any device), on the CPU."""
        was_training = self.net.training
        self.net.eval()
        device = next(self.net.parameters()).device
        predicted = [self.net(batch.to(device)).argmax(1).cpu() for batch in images.split(batch_size)]
        self.net.train(was_training)
        return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)

    def training_step(self, chunk, chunk_idx):
        optimizer = self.optimizers().optimizer  # the bare torch optimizer (module docstring)
        images, labels, index, *flags = chunk
        logits_seen, mean_losses, penalties = [], [], []
        for x, y in zip(images.split(self.batch_size), labels.split(self.batch_size)):
            for transform in self._hooks["transform"]:
                x = transform(x)
            logits = self.net(x)
            loss = self._per_example_loss(logits, y).mean()  # the minibatch mean, as a plain loop
            objective = loss
            for penalty in self._hooks["penalty"]:
                term = penalty(self.net)
                if term is not None:
                    objective = objective + term
                    penalties.append(term.detach())
            optimizer.zero_grad()
            objective.backward()
            for before_step in self._hooks["before_step"]:
                before_step(optimizer, self.net)
            optimizer.step()
            logits_seen.append(logits.detach())
            mean_losses.append(loss.detach())
        # The metrics of the chunk's minibatches in one go: a handful of small ops per minibatch
        # cost a small model ~10 % of its step on a CPU (benchmarks/README.md).
        means = torch.stack(mean_losses)
        loss_sum = means[:-1].sum() * self.batch_size + means[-1] * len(y)  # only the last can be short
        extra = {"penalties": torch.stack(penalties)} if penalties else {}
        self.meter.train(torch.cat(logits_seen), labels, index, loss_sum, *flags, **extra)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        self.meter.eval(self.eval_names[dataloader_idx], self.net(x), y)

    def on_train_epoch_start(self) -> None:
        for start_epoch in self._hooks["start_epoch"]:
            start_epoch(self.current_epoch + 1, next(self.net.parameters()).device)

    def on_train_epoch_end(self) -> None:
        # Lightning runs the validation loop before this hook, so all sums of the epoch are here.
        self.end_epoch(self.current_epoch + 1, [*self.net.parameters(), *self.net.buffers()])

    def end_epoch(self, epoch: int, weights) -> None:
        """Close the epoch's measures into its history row and hand the row to the listeners."""
        row = self.meter.close_epoch(epoch)
        if self.diverged_epoch is not None:
            return  # a diverged seed of a vectorized group: the others train on, this one records nothing
        if not all(math.isfinite(v) for k, v in row.items() if "loss" in k):
            # Diverged: metrics and predictions stay those of the last finite epoch; the run stops.
            self.diverged_epoch = epoch
            self.request_stop()
            return
        self.history.append(row)
        self.meter.keep_epoch(weights)
        for listener in self.epoch_listeners:
            listener(row)


class StopWhenValidationStalls:
    """Early stopping for hyper-parameter search: on a validation metric, never on the test set.

    An epoch listener of ``Classifier``: stops training once ``monitor`` has not improved for
    ``patience`` epochs. Off in studies (no ``patience``), where stopping early would hide overfitting.
    """

    def __init__(self, module: Classifier, monitor: str, patience: int, mode: str = "max"):
        self.module, self.monitor, self.patience, self.sign = (
            module,
            monitor,
            patience,
            1 if mode == "max" else -1,
        )
        self.best: float | None = None
        self.stale = 0

    def __call__(self, row: dict) -> None:
        value = self.sign * row[self.monitor]
        if self.best is None or value > self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
            if self.stale >= self.patience:
                self.module.trainer.should_stop = True


class SeedStack(L.LightningModule):
    """The N seeds of one architecture trained at once, as one vectorized model (``torch.func``).

    Each member ``Classifier`` brings its own freshly seeded net (its initialization) and keeps its
    own metrics, predictions and epoch listeners; this module stacks the members' parameters into
    one tensor per parameter (leading dimension: the seed), runs the forward pass of all seeds with
    ``vmap`` and steps one optimizer over the stacked tensors. An element-wise optimizer (Adam,
    SGD) on a stack makes exactly the updates of N separate ones, and the seeds' losses share no
    parameter, so each seed gets the gradients it would get alone: the same training up to the
    order of floating-point sums. Training chunks are (seeds, examples, ...), each seed's minibatches
    in its own order (``batches.SeedBatches``); evaluation batches are shared by all seeds.
    """

    def __init__(self, members: list[Classifier], optimizer_factory, batch_size: int):
        super().__init__()
        self.automatic_optimization = False
        self.members = members  # a plain list: their nets are not trained here, only given the result
        for member in members:
            member.on_stop_request = self.member_stopped
        params, buffers = torch.func.stack_module_state([m.net for m in members])
        assert not buffers, "nets with buffers (batch norm) are not vectorized (fitting.why_not_vectorized)"
        self.names = list(params)
        self.stacked = nn.ParameterList(params.values())
        self.optimizer_factory = optimizer_factory
        self.batch_size = batch_size
        self.loss = members[0].loss
        # the training side's measures, for all seeds at once (a few kernels instead of a few per
        # seed, which on a GPU would cost more than the step itself); handed to the members per epoch
        self.meter = RunMeter(self.loss, members[0].n_train)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Logits (seeds, batch, classes) of x (seeds, batch, ...), or of a ``shared`` x (batch, ...)."""
        template = self.members[0].net  # functional_call swaps in each seed's parameters

        def one_seed(params, inputs):
            return torch.func.functional_call(template, dict(zip(self.names, params)), (inputs,))

        return torch.func.vmap(one_seed, in_dims=(0, None if shared else 0))(tuple(self.stacked), x)

    def configure_optimizers(self):
        return self.optimizer_factory(self.parameters())

    def training_step(self, chunk, chunk_idx):
        optimizer = self.optimizers().optimizer  # the bare torch optimizer, as in Classifier
        images, labels, index, *flags = chunk
        logits_seen, loss_sums_seen = [], []
        for x, y in zip(images.split(self.batch_size, dim=1), labels.split(self.batch_size, dim=1)):
            logits = self(x)
            loss_sums = per_example_loss(logits.flatten(0, 1), y.flatten(), self.loss).view(y.shape).sum(1)
            optimizer.zero_grad()
            (loss_sums.sum() / y.shape[1]).backward()  # each seed's mean loss, independent sums
            optimizer.step()
            logits_seen.append(logits.detach())
            loss_sums_seen.append(loss_sums.detach())
        # once per chunk, as in Classifier.training_step
        self.meter.train(torch.cat(logits_seen, 1), labels, index, torch.stack(loss_sums_seen).sum(0), *flags)

    def run_state(self) -> dict:
        """Each member's ``Classifier.run_state`` (the stacked weights are Lightning's to save)."""
        return {"members": [member.run_state() for member in self.members]}

    def restore_run_state(self, state: dict) -> None:
        for member, own in zip(self.members, state["members"]):
            member.restore_run_state(own)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        name = self.members[0].eval_names[dataloader_idx]
        for member, logits in zip(self.members, self(x, shared=True)):
            member.meter.eval(name, logits, y)

    def member_stopped(self) -> None:
        """A member diverged: the group trains on until every member has (seeds share no parameter)."""
        if all(m.diverged for m in self.members):
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        self.meter.hand_out([member.meter for member in self.members])
        for i, member in enumerate(self.members):
            member.end_epoch(self.current_epoch + 1, [p[i] for p in self.stacked])

    @torch.no_grad()
    def unstack(self) -> None:
        """Copy each seed's trained parameters into its member's net (for feature maps and the like)."""
        for i, member in enumerate(self.members):
            member.net.load_state_dict({name: p[i].cpu() for name, p in zip(self.names, self.stacked)})
