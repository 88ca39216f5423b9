"""The LightningModule: one classifier, loss and accuracy on train, validation and test every epoch.

Metrics are summed on the device inside each step and read back once per epoch: no ``.item()``
or logger call per step. Which number is which:

* ``train_loss`` / ``train_acc``: running mean over the epoch's training batches, in training
  mode (dropout on, weights changing), i.e. what Keras prints.
* ``train_eval_loss`` / ``train_eval_acc``: an eval-mode pass over the whole training set after
  the epoch (only with ``trainer.train_eval_pass: true``).
* ``val_*`` and ``test_*``: eval-mode passes after the epoch. The test set is an extra evaluation
  loader, reported every epoch and never used to select anything; so is each named extra test
  set of an image-folder dataset (loader ``test@<name>``, metrics ``test_acc/<name>``, ``test_loss/<name>``).
* ``train_clean_acc`` / ``train_corrupted_acc``: the running training accuracy (against the labels
  trained on) split into examples whose label was kept and those a randomization control replaced.
* ``test_conf_wrong``: fraction of test images predicted wrongly with confidence >= 0.9;
  ``test_ece``: expected calibration error of the test predictions (15 equal-width bins).
* The per-example record (``example_record``): for each epoch and training example, whether the
  training step classified it correctly, from the logits the step computes anyway (training mode,
  before that minibatch's update: the same predictions as ``train_acc``). Forgetting events and
  learning epochs (Toneva et al. 2019) are computed from it by collect (``examples.py``).

The loss (``train.loss``, losses.py): ``cross_entropy`` or ``squared_error`` (the squared distance between the
logits and the one-hot label, summed over classes: Belkin et al. 2019's loss for double descent);
training and every evaluation use the same one.

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

Why one file: ``SeedStack`` (several seeds as one vectorized model) fills its members'
``Classifier`` sums and per-example records in their own form, so the two classes are one contract
of what a run accumulates; split, a change to one would silently break the other.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from .losses import per_example_loss

CONFIDENT = 0.9  # "confidently wrong": the source study's wrong predictions at >= 90 % confidence
ECE_BINS = 15


def calibration_counts(confidence: torch.Tensor, predicted: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per batch: [confidently wrong, then per confidence bin: count, sum of confidence, correct]."""
    correct = (predicted == y).to(confidence.dtype)
    # A diverged net gives NaN confidences: bin them at 0 (the epoch is then dropped as diverged)
    # rather than index out of range.
    bins = (torch.nan_to_num(confidence, nan=0.0) * ECE_BINS).long().clamp_(min=0, max=ECE_BINS - 1)
    per_bin = torch.zeros(3, ECE_BINS, dtype=confidence.dtype, device=confidence.device)
    per_bin[0].index_add_(0, bins, torch.ones_like(confidence))
    per_bin[1].index_add_(0, bins, confidence)
    per_bin[2].index_add_(0, bins, correct)
    confidently_wrong = ((1 - correct) * (confidence >= CONFIDENT)).sum()
    return torch.cat([confidently_wrong.view(1), per_bin.flatten()])


def expected_calibration_error(counts: torch.Tensor) -> float:
    """ECE = sum over bins of n_b / N * |accuracy_b - confidence_b| = sum |correct_b - conf_b| / N."""
    per_bin = counts[1:].view(3, ECE_BINS)
    return float((per_bin[2] - per_bin[1]).abs().sum() / per_bin[0].sum())


class Classifier(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer_factory,
        eval_names: list[str],
        batch_size: int,
        n_train: int,
        loss: str = "cross_entropy",
    ):
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.batch_size = batch_size
        self.optimizer_factory = optimizer_factory
        self.eval_names = list(eval_names)  # names of the validation loaders, in order
        self.loss = loss
        self.history: list[dict] = []  # one row per finished epoch whose losses are finite
        # Per finished epoch (aligned with history): which training examples the step got right.
        self.example_record: list[torch.Tensor] = []
        self.n_train = n_train
        self._example_hits: torch.Tensor | None = None  # this epoch's, indexed by position in the split
        self.diverged_epoch: int | None = None  # first epoch whose loss was NaN or infinite
        self.on_stop_request = None  # set by a SeedStack: it decides when the group stops
        self.epoch_listeners: list = []  # called with each finished epoch's row (e.g. MLflow)
        # prefix -> [loss sum, correct count, examples] per loader, or a tensor of counts (_add)
        self._sums: dict[str, list | torch.Tensor] = {}
        # The latest epoch's test predictions, rows [label, predicted, confidence] (on the device).
        self.test_predictions: list[torch.Tensor] = []
        self._epoch_predictions: list[torch.Tensor] = []

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

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
            "test_predictions": [t.cpu() for t in self.test_predictions],
            "example_record": [t.cpu() for t in self.example_record],
        }

    def restore_run_state(self, state: dict) -> None:
        """Continue from ``run_state()``'s result, as if the epochs it covers had just been trained."""
        self.history = list(state["history"])
        self.diverged_epoch = state["diverged_epoch"]
        self.test_predictions = list(state["test_predictions"])
        self.example_record = list(state["example_record"])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Eval-mode predicted classes of ``images`` (uint8 N x C x H x W, on any device), on the CPU."""
        was_training = self.net.training
        self.net.eval()
        device = next(self.net.parameters()).device
        predicted = [self.net(batch.to(device)).argmax(1).cpu() for batch in images.split(batch_size)]
        self.net.train(was_training)
        return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)

    def _accumulate(self, prefix: str, hit: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """Add a batch's loss sum and correct count to the epoch's on-device totals (no host sync)."""
        totals = self._sums.get(prefix)
        if totals is None:
            self._sums[prefix] = [loss_sum.detach().clone(), hit.sum(), len(hit)]
        else:
            totals[0] += loss_sum.detach()
            totals[1] += hit.sum()
            totals[2] += len(hit)

    def _add(self, key: str, stats: torch.Tensor) -> None:
        """Add a tensor of counts (a subset's [correct, size], calibration counts) to the epoch's totals."""
        self._sums[key] = self._sums[key] + stats if key in self._sums else stats

    def training_step(self, chunk, chunk_idx):
        optimizer = self.optimizers().optimizer  # the bare torch optimizer (module docstring)
        images, labels, index, *flags = chunk
        logits_seen, mean_losses = [], []
        for x, y in zip(images.split(self.batch_size), labels.split(self.batch_size)):
            logits = self.net(x)
            loss = per_example_loss(logits, y, self.loss).mean()  # the minibatch mean, as a plain loop
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            logits_seen.append(logits.detach())
            mean_losses.append(loss.detach())
        # The metrics of the chunk's minibatches in one go: a handful of small ops per minibatch
        # cost a small model ~10 % of its step on a CPU (benchmarks/README.md).
        means = torch.stack(mean_losses)
        loss_sum = means[:-1].sum() * self.batch_size + means[-1] * len(y)  # only the last can be short
        self.record_train(torch.cat(logits_seen), labels, index, loss_sum, *flags)

    def record_train(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor,
        loss_sum: torch.Tensor,
        corrupted: torch.Tensor | None = None,
    ) -> None:
        """Add training minibatches (logits made before each one's update) to the epoch's sums and the
        per-example record (``index``: the examples' positions in the split; ``corrupted``: labels a
        control replaced)."""
        hit = logits.argmax(1) == y
        self._accumulate("train", hit, loss_sum)
        if self._example_hits is None:
            self._example_hits = torch.zeros(self.n_train, dtype=torch.bool, device=hit.device)
        self._example_hits[index] = hit  # every example is seen once per epoch: no reset needed
        if corrupted is not None:
            self._add("train_clean", torch.stack([(hit & ~corrupted).sum(), (~corrupted).sum()]))
            self._add("train_corrupted", torch.stack([(hit & corrupted).sum(), corrupted.sum()]))

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        self.record_eval(self.eval_names[dataloader_idx], self.net(x), y)

    def record_eval(self, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add one evaluation batch of loader ``name`` to the epoch's sums (and the test predictions)."""
        self._accumulate(name, logits.argmax(1) == y, per_example_loss(logits, y, self.loss).sum())
        if name == "test":
            confidence, predicted = logits.softmax(1).max(1)
            self._epoch_predictions.append(torch.stack([y.float(), predicted.float(), confidence], 1))
            self._add("calibration", calibration_counts(confidence, predicted, y))

    def on_train_epoch_end(self) -> None:
        # Lightning runs the validation loop before this hook, so all sums of the epoch are here.
        self.end_epoch(self.current_epoch + 1)

    def end_epoch(self, epoch: int) -> None:
        """Turn the epoch's sums into its history row and hand the row to the listeners."""
        row = {"epoch": epoch}
        sums = self._sums
        self._sums = {}
        calibration = sums.pop("calibration", None)
        for prefix, totals in sums.items():
            if isinstance(totals, list):  # a whole loader: loss sum, correct, size
                loss, correct, n = totals
                base, _, test_set = prefix.partition("@")  # extra test set test@<name>: test_acc/<name>
                suffix = f"/{test_set}" if test_set else ""
                row[f"{base}_loss{suffix}"] = loss.item() / n
                row[f"{base}_acc{suffix}"] = correct.item() / n
            else:  # a subset: correct, size
                correct, n = totals.tolist()
                row[f"{prefix}_acc"] = correct / n if n else float("nan")
        if calibration is not None:
            row["test_conf_wrong"] = float(calibration[0]) / float(calibration[1 : 1 + ECE_BINS].sum())
            row["test_ece"] = expected_calibration_error(calibration)
        predictions, self._epoch_predictions = self._epoch_predictions, []
        if self.diverged_epoch is not None:
            return  # a diverged seed of a vectorized group: the others train on, this one records nothing
        if not all(math.isfinite(v) for k, v in row.items() if "loss" in k):
            # Diverged: metrics and predictions stay those of the last finite epoch; the run stops.
            self.diverged_epoch = epoch
            self.request_stop()
            return
        self.history.append(row)
        if self._example_hits is not None:
            self.example_record.append(self._example_hits.clone())
        self.test_predictions = predictions
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
        self._example_hits: torch.Tensor | None = None  # (seeds, examples): see Classifier
        self._train_sums: dict[str, torch.Tensor] = {}  # this epoch: key -> (seeds, 2) sums, see record_train
        self._train_examples = 0  # per seed, this epoch

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
        self.record_train(
            torch.cat(logits_seen, 1), labels, index, torch.stack(loss_sums_seen).sum(0), *flags
        )

    def record_train(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor,
        loss_sums: torch.Tensor,
        corrupted: torch.Tensor | None = None,
    ) -> None:
        """``Classifier.record_train`` for all seeds at once ((seeds, examples) tensors): a few kernels
        instead of a few per seed, which on a GPU would cost more than the step itself."""
        hit = logits.argmax(2) == y
        if self._example_hits is None:
            shape = (len(self.members), self.members[0].n_train)
            self._example_hits = torch.zeros(shape, dtype=torch.bool, device=hit.device)
        self._example_hits.scatter_(1, index, hit)
        stats = {"train": torch.stack([loss_sums.detach(), hit.sum(1).to(loss_sums.dtype)], 1)}
        if corrupted is not None:
            stats["train_clean"] = torch.stack([(hit & ~corrupted).sum(1), (~corrupted).sum(1)], 1)
            stats["train_corrupted"] = torch.stack([(hit & corrupted).sum(1), corrupted.sum(1)], 1)
        for key, value in stats.items():
            self._train_sums[key] = self._train_sums[key] + value if key in self._train_sums else value
        self._train_examples += y.shape[1]

    def _hand_out_train_sums(self) -> None:
        """Give each member its row of the stacked training sums, in ``Classifier._sums``' form and first
        (as if it had recorded them itself, so its metrics keep their order)."""
        sums, self._train_sums = self._train_sums, {}
        for i, member in enumerate(self.members):
            own: dict = {key: value[i] for key, value in sums.items()}
            if "train" in own:
                loss, correct = own["train"]
                own["train"] = [loss, correct, self._train_examples]
            member._sums = {**own, **member._sums}
            if self._example_hits is not None:
                member._example_hits = self._example_hits[i]  # end_epoch keeps a copy
        self._train_examples = 0

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
            member.record_eval(name, logits, y)

    def member_stopped(self) -> None:
        """A member diverged: the group trains on until every member has (seeds share no parameter)."""
        if all(m.diverged for m in self.members):
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        self._hand_out_train_sums()
        for member in self.members:
            member.end_epoch(self.current_epoch + 1)

    @torch.no_grad()
    def unstack(self) -> None:
        """Copy each seed's trained parameters into its member's net (for feature maps and the like)."""
        for i, member in enumerate(self.members):
            member.net.load_state_dict({name: p[i].cpu() for name, p in zip(self.names, self.stacked)})
