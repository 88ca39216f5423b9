"""The rules of one training run's config (conf/train.yaml composed with params.yaml).

Its own module because the rules span two homes: the value validators (``checks``) and the
randomization controls' own check (``data.controls``, which itself uses ``checks``). Kept in
``checks`` it made ``checks`` and ``data.controls`` import each other. Called before a run
trains (``train``) and for every axis value of a study before anything trains (``study``).
"""

from __future__ import annotations

from .checks import choice, flag, int_value, positive_int, positive_number
from .data import controls
from .training.losses import LOSSES
from .training.models.layers import INITS


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
    flag(trainer.allow_tf32, "trainer.allow_tf32")
    positive_number(cfg.optimizer.get("lr"), "train.lr")
    int_value(cfg.seed, "seed", low=0, what="a non-negative integer (params.yaml: study.seeds)")
    controls.check_control(cfg.control)
