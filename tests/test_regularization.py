"""Regularization as study axes (issue 31): weight decay (l2, decoupled), augmentation, label
smoothing and dropout, each an optional part of training that leaves the identity of every run
that does not use it, checked against hand computations on the real training path."""

from __future__ import annotations

import copy
import itertools
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import compose, run_cli
from overfitlab import identity as ident
from overfitlab.data.datasets import load_prepared
from overfitlab.errors import ConfigError
from overfitlab.run_rules import check_run_config
from overfitlab.training.fitting import build_classifier, fit
from overfitlab.training.parts.augment import Augment

ONE_STEP = ["model=mlp_300_100", "optimizer=sgd", "train.lr=0.1", "train.epochs=1", "train.batch_size=200"]
QUIET = ["trainer.progress_bar=false", "trainer.threads=1"]


def one_step(prepared, *overrides: str):
    """(the net before, the net after one SGD step on the whole training split, the history)."""
    cfg = compose("train", [*ONE_STEP, *QUIET, *overrides])
    data = load_prepared(prepared)
    assert len(data.labels["train"]) == 200  # so batch_size 200 is one step
    before = build_classifier(cfg, data).net  # seeded: the net fit() starts from
    fitted = fit(cfg, data)
    return before, fitted.module.net, fitted.module.history, data


def data_gradient(net: nn.Module, data, extra=None) -> dict[str, torch.Tensor]:
    """d/dw of the mean cross-entropy over the training split (plus ``extra(net)``), by autograd."""
    net = copy.deepcopy(net)
    loss = nn.functional.cross_entropy(net(data.images["train"]), data.labels["train"])
    if extra is not None:
        loss = loss + extra(net)
    net.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def is_weight(name: str, net: nn.Module) -> bool:
    module = net.get_submodule(name.rsplit(".", 1)[0])
    return name.endswith("weight") and isinstance(module, nn.Linear | nn.Conv2d)


def test_l2_weight_decay_adds_strength_times_the_squared_weights_to_the_loss(prepared):
    strength, lr = 0.01, 0.1
    before, after, history, data = one_step(prepared, f"train.weight_decay={strength}")
    weights = [p for n, p in before.named_parameters() if is_weight(n, before)]
    assert len(weights) == 3  # the three dense layers' weights: biases are not decayed
    penalty = strength * sum(float(w.detach().square().sum()) for w in weights)
    grad = data_gradient(before, data)
    for name, w0 in before.named_parameters():
        decay = 2 * strength * w0 if is_weight(name, before) else 0  # d/dw strength * w^2
        expected = w0 - lr * (grad[name] + decay)
        assert torch.allclose(after.get_parameter(name), expected, atol=1e-6), name
    assert history[0]["train_penalty"] == pytest.approx(penalty, rel=1e-5)
    plain = nn.functional.cross_entropy(before(data.images["train"]), data.labels["train"]).detach()
    assert history[0]["train_loss"] == pytest.approx(plain.item(), rel=1e-5)  # the data loss alone


def test_decoupled_weight_decay_shrinks_the_weights_apart_from_the_gradient(prepared):
    strength, lr = 0.05, 0.1
    before, after, history, data = one_step(
        prepared, f"train.weight_decay={strength}", "train.weight_decay_mode=decoupled"
    )
    grad = data_gradient(before, data)
    for name, w0 in before.named_parameters():
        shrink = (1 - lr * strength) if is_weight(name, before) else 1
        assert torch.allclose(after.get_parameter(name), w0 * shrink - lr * grad[name], atol=1e-6), name
    assert "train_penalty" not in history[0]  # nothing added to the loss


def test_label_smoothing_trains_on_the_smoothed_targets(prepared):
    amount, lr = 0.2, 0.1
    before, after, history, data = one_step(prepared, f"train.label_smoothing={amount}")
    net = copy.deepcopy(before)
    loss = nn.functional.cross_entropy(
        net(data.images["train"]), data.labels["train"], label_smoothing=amount
    )
    net.zero_grad()
    loss.backward()
    for name, w0 in before.named_parameters():
        assert torch.allclose(after.get_parameter(name), w0 - lr * net.get_parameter(name).grad, atol=1e-6)
    assert history[0]["train_loss"] == pytest.approx(loss.item(), rel=1e-5)


def test_augmentation_flips_and_crops_each_image_reproducibly():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    flip = Augment("flip", seed=3)
    flip.start_epoch(1, torch.device("cpu"))
    flipped = flip.transform(images)
    for original, out in zip(images, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(-1))
    crop = Augment("crop", padding=1, seed=3)
    outs = []
    for epoch in (1, 1, 2):
        crop.start_epoch(epoch, torch.device("cpu"))
        outs.append(crop.transform(images.repeat(8, 1, 1, 1)))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])  # seeded by seed, epoch
    padded = nn.functional.pad(images.repeat(8, 1, 1, 1), (1, 1, 1, 1))
    for i, out in enumerate(outs[0]):  # each crop is a 4 x 4 window of the zero-padded image
        windows = [padded[i, :, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(out, w) for w in windows)
    assert not all(torch.equal(o, i) for o, i in zip(outs[0], images.repeat(8, 1, 1, 1), strict=True))


def test_dropout_is_an_axis_of_every_family_with_a_dropout_argument(project):
    from overfitlab.training.fitting import build_net

    class Data:
        in_channels, image_size, num_classes = 1, 28, 10

    net = build_net(compose("train", ["model=mlp_300_100", "model.dropout=0.25"]), Data())
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    net = build_net(compose("train", ["model=deep_network", "model.dropout=0.5"]), Data())
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5]
    with pytest.raises(ConfigError, match=r"model.dropout=0.5: model cnn5_width \(CNN5\) has no dense"):
        check_run_config(compose("train", ["model=cnn5_width", "model.dropout=0.5"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.weight_decay=-0.1", "train.weight_decay=-0.1 must be a number >= 0"),
        ("train.weight_decay_mode=l1", "train.weight_decay_mode='l1'; allowed: ['l2', 'decoupled']"),
        ("train.augment=rotate", "train.augment='rotate'; allowed: ['none', 'flip', 'crop', 'crop_flip']"),
        ("train.augment_padding=-1", "train.augment_padding=-1"),
        ("train.label_smoothing=1.0", "train.label_smoothing=1.0 must be a number from 0 up to"),
        ("model.dropout=1.0", "model.dropout=1.0 must be a number from 0 up to"),
    ],
)
def test_bad_regularization_settings_get_one_line_naming_the_key(project, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_run_config(compose("train", ["model=mlp_300_100", override]))


def test_label_smoothing_is_refused_with_the_squared_loss(project):
    with pytest.raises(ConfigError, match="train.label_smoothing=0.1 needs train.loss=cross_entropy"):
        check_run_config(compose("train", ["train.loss=squared_error", "train.label_smoothing=0.1"]))


def test_a_bad_setting_stops_the_train_command_with_one_line(prepared):
    result = run_cli(sys.executable, "-m", "overfitlab.train", "train.weight_decay_mode=l1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: train.weight_decay_mode='l1'; allowed: ['l2', 'decoupled']"
    ]


def test_the_levers_at_their_defaults_leave_every_identity_and_hash_as_before(project):
    meta = {"data_version": "v"}
    plain = ident.identity(compose("train", ["model=mlp_300_100"]), meta)
    assert "parts" not in plain["trainer"] and "dropout" not in plain["model"]
    files = {p.name for p in ident.numerics_code(tuple(ident.part_modules(plain)))}
    assert "weight_decay.py" not in files and "augment.py" not in files
    on = ident.identity(compose("train", ["model=mlp_300_100", "train.weight_decay=0.0005"]), meta)
    assert on["trainer"]["parts"] == {
        "weight_decay": {"_target_": "overfitlab.training.parts.weight_decay.WeightDecay", "strength": 0.0005}
    }
    used = {p.name for p in ident.numerics_code(tuple(ident.part_modules(on)))}
    assert "weight_decay.py" in used and "augment.py" not in used
    assert on["training_code"] != plain["training_code"]
    smoothing = ident.identity(compose("train", ["model=mlp_300_100", "train.label_smoothing=0.1"]), meta)
    assert ident.config_hash(smoothing) not in (ident.config_hash(plain), ident.config_hash(on))


def test_the_regularization_table_compares_each_regimen_with_none_per_model_and_labels():
    from overfitlab.analysis.regularization import regularization_table

    rows = []
    for noise, wd, augment, seed in itertools.product(
        (0.0, 1.0), (0.0, 0.0005), ("none", "crop_flip"), range(3)
    ):
        test = (0.1 if noise else 0.80 + 0.02 * (wd > 0) + 0.01 * (augment != "none")) + 0.001 * seed
        train = 0.6 if noise and augment != "none" else 1.0  # augmented random labels: not fitted
        rows.append(
            {
                "source_dataset": "fashion_mnist",
                "dataset": f"fashion_mnist+label_noise={noise}+weight_decay={wd}+augment={augment}",
                "model": "mlp",
                "seed": seed,
                "label_noise": noise,
                "weight_decay": wd,
                "augment": augment,
                "final_train_acc": train,
                "final_test_acc": test,
                "final_gap_acc": train - test,
                "fit_epoch": 7.0 if train == 1.0 else float("nan"),
                "epochs": 60,
            }
        )
    axes = {
        "label_noise": "train.label_noise",
        "weight_decay": "train.weight_decay",
        "augment": "train.augment",
    }
    table = regularization_table(pd.DataFrame(rows), axes).set_index(["labels", "regimen"])
    assert list(table.loc["true labels"].index) == [
        "none",
        "augment",
        "weight decay",
        "weight decay + augment",
    ]
    both = table.loc[("true labels", "weight decay + augment")]
    assert both["test_mean"] == pytest.approx(83.1) and both["test_vs_none"] == pytest.approx(3.0)
    assert both["p_vs_none"] == pytest.approx(0.1) and "cannot go below 0.1" in both["note"]
    assert both["test_ci_low"] < 83.1 < both["test_ci_high"]
    random = table.loc[("random labels", "augment")]
    assert random["seeds_fitted"] == 0 and np.isnan(random["fit_epoch_median"])
    assert table.loc[("random labels", "none"), "fit_epoch_median"] == 7
    assert np.isnan(table.loc[("true labels", "none"), "test_vs_none"])


@pytest.mark.slow
def test_a_study_with_regularizer_axes_and_a_null_value_reports_them(prepared, project):
    """``model.dropout: [null, 0.5]`` (null: the model's own) is an axis value like any: the report
    draws it (this study's first report failed on the null value)."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["study"] |= {
        "models": ["mlp_300_100"],
        "axes": {"model.dropout": [None, 0.5], "train.weight_decay": [0.0, 0.001]},
    }
    params["train"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (
        ["overfitlab.train", "-m", "trainer.progress_bar=false"],
        ["overfitlab.collect"],
        ["overfitlab.report"],
    ):
        result = run_cli(sys.executable, "-m", *stage)
        assert result.returncode == 0, result.stderr[-3000:]
    figures = project / "reports/figures"
    assert (figures / "against_axis__dropout.png").exists() and (figures / "regularization.png").exists()
    table = pd.read_csv(figures / "regularization.csv")
    assert set(table["regimen"]) == {"none", "dropout", "weight decay", "dropout + weight decay"}
    against = pd.read_csv(figures / "against_dropout.csv", keep_default_na=False)
    assert sorted(set(against["dropout"].astype(str))) == ["0.5", "null"]  # named, not dropped as missing
