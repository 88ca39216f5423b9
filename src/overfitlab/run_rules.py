"""The rules of one training run's config (conf/train.yaml composed with params.yaml).

Its own module because the rules span two homes: the value validators (``checks``) and the
randomization controls' own check (``data.controls``, which itself uses ``checks``). Kept in
``checks`` it made ``checks`` and ``data.controls`` import each other. Called before a run
trains (``train``) and for every axis value of a study before anything trains (``study``).
"""

from __future__ import annotations

import inspect

from .checks import below_one, choice, flag, int_value, is_number, positive_int, positive_number
from .data import controls
from .errors import require
from .training.losses import LOSSES
from .training.models.layers import INITS
from .training.parts.augment import KINDS
from .training.parts.weight_decay import MODES


def check_run_config(cfg) -> None:
    """Each error names the key a user sets (``train.*`` in params.yaml, ``trainer.*`` in
    conf/trainer/)."""
    trainer = cfg.trainer
    int_value(trainer.max_epochs, "train.epochs", low=1, what="a positive integer (params.yaml or override)")
    positive_int(trainer.batch_size, "train.batch_size")
    positive_int(trainer.examples_per_step, "trainer.examples_per_step")
    positive_int(trainer.eval_batch_size, "trainer.eval_batch_size")
    int_value(
        trainer.feature_map_image, "trainer.feature_map_image", low=0, what="a test-image index (0, 1, ...)"
    )
    stopping = trainer.early_stopping
    if stopping.patience is not None:
        int_value(
            stopping.patience,
            "trainer.early_stopping.patience",
            low=1,
            what="null (off) or a positive integer",
        )
    choice(stopping.monitor, "trainer.early_stopping.monitor (never a test metric)", ("val_acc", "val_loss"))
    choice(stopping.mode, "trainer.early_stopping.mode", ("max", "min"))
    choice(trainer.loss, "train.loss", LOSSES)
    choice(cfg.model.get("init"), "model.init (null: the framework's default)", INITS)
    if "width" in cfg.model:  # the capacity of a width-parametrized family (conf/model/*_width.yaml)
        int_value(cfg.model.width, "model.width", low=1, what="a positive integer (the layer width k)")
    flag(trainer.vectorize_seeds, "trainer.vectorize_seeds", also=("auto",))
    for key in ("checkpoint", "keep_checkpoint", "progress_bar", "train_eval_pass"):
        flag(trainer.get(key), "train.train_eval_pass" if key == "train_eval_pass" else f"trainer.{key}")
    flag(trainer.allow_tf32, "trainer.allow_tf32")
    every_s = trainer.get("checkpoint_every_s", 0)
    require(
        is_number(every_s) and every_s >= 0,
        f"trainer.checkpoint_every_s={every_s!r} must be a number of seconds >= 0 (0: after every epoch)",
    )
    positive_number(cfg.optimizer.get("lr"), "train.lr")
    int_value(cfg.seed, "seed", low=0, what="a non-negative integer (params.yaml: study.seeds)")
    controls.check_control(cfg.control)
    check_parts(trainer.parts, trainer.loss)
    check_dropout(cfg.model)


def check_parts(parts, loss: str) -> None:
    """The optional parts of training (training/parts/), by the params.yaml keys that set them."""
    decay = parts.weight_decay
    require(
        is_number(decay.strength) and decay.strength >= 0,
        f"train.weight_decay={decay.strength!r} must be a number >= 0 (0: off)",
    )
    choice(decay.mode, "train.weight_decay_mode", MODES)
    choice(parts.augment.kind, "train.augment", KINDS)
    int_value(parts.augment.padding, "train.augment_padding", low=0, what="pixels, an integer >= 0")
    smoothing = below_one(parts.label_smoothing.amount, "train.label_smoothing")
    require(
        smoothing == 0 or loss == "cross_entropy",
        f"train.label_smoothing={smoothing} needs train.loss=cross_entropy (it smooths the softmax "
        f"targets), not {loss}",
    )


def check_dropout(model) -> None:
    """``model.dropout`` (null, or a rate for a family with a ``dropout`` argument)."""
    dropout = model.get("dropout")
    if dropout is None:
        return
    below_one(dropout, "model.dropout")
    from hydra.utils import get_class

    family = get_class(model.net._target_)
    require(
        "dropout" in inspect.signature(family).parameters,
        f"model.dropout={dropout}: model {model.name} ({family.__name__}) has no dense hidden layers to "
        "drop out; use it with a model whose family takes dropout (mlp, convnet, deep_network, alexnet)",
    )
