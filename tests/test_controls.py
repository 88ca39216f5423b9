"""Randomization controls and memorization metrics, on small tensors with hand-computed answers."""

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import compose, run_cli
from overfitlab.data.controls import apply_controls, control_tag, corrupt_labels, random_pixels
from overfitlab.measures.calibration import ECE_BINS, calibration_counts, expected_calibration_error


def splits(n=40, classes=4):
    gen = torch.Generator().manual_seed(0)
    images = {s: torch.rand(n, 1, 5, 5, generator=gen) for s in ("train", "val", "test")}
    labels = {s: torch.arange(n) % classes for s in ("train", "val", "test")}
    return images, labels


@pytest.mark.parametrize("mode", ["other", "uniform"])
@pytest.mark.parametrize("fraction,expected", [(0.0, 0), (0.25, 25), (0.333, 33), (1.0, 100)])
def test_label_noise_draws_exactly_the_fraction_asked(fraction, expected, mode):
    labels = torch.arange(100) % 10
    noise = corrupt_labels(labels, 10, fraction, np.random.default_rng(7), mode)
    assert int(noise.drawn.sum()) == expected
    assert torch.equal(noise.labels[~noise.drawn], labels[~noise.drawn])  # untouched outside the draw
    again = corrupt_labels(labels, 10, fraction, np.random.default_rng(7), mode)
    assert torch.equal(again.labels, noise.labels) and torch.equal(again.drawn, noise.drawn)  # seeded
    assert noise.labels.min() >= 0 and noise.labels.max() < 10
    assert torch.equal(noise.original, labels) and torch.equal(labels, torch.arange(100) % 10)  # input kept


@pytest.mark.parametrize("classes", [2, 3, 10])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 1.0])
def test_mode_other_changes_every_drawn_label_so_p_is_the_share_of_wrong_labels(classes, fraction):
    labels = torch.arange(500) % classes
    noise = corrupt_labels(labels, classes, fraction, np.random.default_rng(1), "other")
    assert not (noise.labels[noise.drawn] == labels[noise.drawn]).any()  # never the original class
    assert torch.equal(noise.changed, noise.drawn) and noise.changed_share == fraction
    if fraction == 1.0:  # ... and every other class is drawn
        wrong = noise.labels[noise.drawn & (labels == 0)]
        assert set(wrong.tolist()) == set(range(1, classes))


def test_mode_uniform_is_zhang_et_al_and_the_mask_marks_only_the_labels_that_changed():
    labels = torch.arange(500) % 10
    noise = corrupt_labels(labels, 10, 1.0, np.random.default_rng(0), "uniform")
    assert torch.equal(noise.changed, noise.labels != labels)  # the mask is "label differs"
    kept = int(noise.drawn.sum() - noise.changed.sum())
    assert 30 <= kept <= 70  # about 1 in 10 draws returns the true label
    assert noise.changed_share == pytest.approx(1 - kept / 500) and noise.changed_share < 1.0
    assert noise.record() == {
        "label_noise_mode": "uniform",
        "labels_drawn": 500,
        "labels_changed": 500 - kept,
        "labels_changed_share": noise.changed_share,
    }


def test_mode_uniform_draws_the_labels_of_earlier_versions():
    # Golden values of the code before label_noise_mode (then the only mode): studies that asked
    # for uniform labels get the same labels, hence the same numbers. Drawn: 12 examples; three
    # of them (3, 20 and 26) drew their own label back, so 9 changed.
    noise = corrupt_labels(torch.arange(30) % 5, 5, 0.4, np.random.default_rng(3), "uniform")
    assert noise.labels.tolist() == [
        3,
        1,
        2,
        3,
        4,
        0,
        1,
        2,
        3,
        4,
        4,
        1,
        1,
        3,
        4,
        0,
        1,
        4,
        0,
        4,
        0,
        1,
        2,
        4,
        4,
        4,
        1,
        0,
        1,
        4,
    ]
    assert noise.drawn.nonzero().flatten().tolist() == [0, 3, 10, 12, 17, 18, 20, 23, 25, 26, 27, 28]
    assert noise.changed.nonzero().flatten().tolist() == [0, 10, 12, 17, 18, 23, 25, 27, 28]


def test_controls_never_touch_validation_or_test_labels():
    images, labels = splits()
    originals = {s: y.clone() for s, y in labels.items()}
    noise = apply_controls(images, labels, 4, label_noise=1.0, pixels="none", data_seed=0)
    assert bool(noise.changed.all()) and noise.mode == "other"  # the default mode: every label wrong
    assert torch.equal(labels["train"], noise.labels) and torch.equal(noise.original, originals["train"])
    assert torch.equal(labels["val"], originals["val"]) and torch.equal(labels["test"], originals["test"])
    table = noise.table()
    assert list(table.columns) == ["example", "original_label", "label", "drawn", "corrupted"]
    assert (table.corrupted == (table.label != table.original_label)).all()


def test_label_noise_leaves_the_pixel_controls_random_stream_alone_when_off():
    images, labels = splits()
    apply_controls(images, labels, 4, label_noise=0.0, pixels="random", data_seed=3)
    again, _ = splits()
    again["train"] = random_pixels(again["train"], np.random.default_rng(3))
    assert torch.equal(images["train"], again["train"])


def test_shuffled_pixels_use_one_permutation_for_every_image_of_every_split():
    images, labels = splits()
    ramp = torch.arange(25.0).view(1, 1, 5, 5)
    for split in images:
        images[split][0] = ramp  # an image whose values tell where each pixel came from
        images[split][1] = ramp + 100
    before = {s: x.clone() for s, x in images.items()}
    apply_controls(images, labels, 4, label_noise=0.0, pixels="shuffled", data_seed=3)
    permutation = images["train"][0].flatten().long()
    assert sorted(permutation.tolist()) == list(range(25)) and permutation.tolist() != list(range(25))
    for split in images:
        assert torch.equal(images[split][0].flatten().long(), permutation)
        assert torch.equal(images[split][1].flatten() - 100, permutation.float())
        assert torch.equal(images[split][5].flatten(), before[split][5].flatten()[permutation])


def test_random_pixels_permute_each_training_image_differently():
    images, labels = splits()
    before = {s: x.clone() for s, x in images.items()}
    apply_controls(images, labels, 4, label_noise=0.0, pixels="random", data_seed=3)
    x, x0 = images["train"].flatten(1), before["train"].flatten(1)
    assert torch.equal(x.sort(1).values, x0.sort(1).values)  # each image keeps its own pixels
    orders = [tuple((x0[i].unsqueeze(0) == x[i].unsqueeze(1)).float().argmax(1).tolist()) for i in range(5)]
    assert len(set(orders)) == 5  # ... in its own order
    assert torch.equal(images["test"], before["test"]) and torch.equal(images["val"], before["val"])


def test_gaussian_images_match_the_training_mean_and_variance():
    images, labels = splits(n=400)
    mean, std = images["train"].mean(), images["train"].std()
    apply_controls(images, labels, 4, label_noise=0.0, pixels="gaussian", data_seed=1)
    assert float(images["train"].mean()) == pytest.approx(float(mean), abs=0.01)
    assert float(images["train"].std()) == pytest.approx(float(std), rel=0.03)


def test_control_tag_names_the_variant():
    assert control_tag(0.0, "none") == ""
    assert control_tag(0.2, "none") == "+labels0.2"
    assert control_tag(1, "shuffled") == "+labels1+shuffled"


def test_confidently_wrong_and_ece_on_a_hand_computed_example():
    # Two classes; confidence = softmax max. logit gap ln(9) -> confidence 0.9; gap ln(3) -> 0.75.
    g9, g3 = math.log(9), math.log(3)
    logits = torch.tensor([[g9, 0.0], [g9, 0.0], [0.0, g3], [0.0, g3]])
    y = torch.tensor([0, 1, 1, 0])  # right at 0.9, wrong at 0.9, right at 0.75, wrong at 0.75
    confidence, predicted = logits.softmax(1).max(1)
    counts = calibration_counts(confidence, predicted, y)
    assert float(counts[0]) == 1  # one wrong prediction with confidence >= 0.9
    # Bins: 0.9 -> bin 13 (0.9*15 = 13.5), 0.75 -> bin 11 (11.25). Both bins: accuracy 0.5.
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |0.5 - 0.75| = 0.2 + 0.125 = 0.325
    assert expected_calibration_error(counts) == pytest.approx(0.325, abs=1e-6)
    per_bin = counts[1:].view(3, ECE_BINS)
    assert per_bin[0].tolist()[13] == 2 and per_bin[0].tolist()[11] == 2


@pytest.mark.slow
def test_training_with_random_labels_reports_clean_and_corrupted_accuracy(prepared, project):
    from overfitlab.train import train

    summary = train(
        compose(
            "train",
            [
                "model=mlp_300_100",
                "train.label_noise=0.5",
                "train.epochs=3",
                "++train.label_noise_mode=uniform",
                "trainer.progress_bar=false",
            ],
        )
    )
    run_dir = (
        project / "runs" / "fashion_mnist" / "mlp_300_100" / "seed=0"
    )  # in-process: no command-line axes
    table = pd.read_csv(run_dir / "metrics.csv")
    assert {"train_clean_acc", "train_corrupted_acc", "test_conf_wrong", "test_ece"} <= set(table.columns)
    assert (table.dataset == "fashion_mnist").all()
    assert summary["dataset"] == "fashion_mnist" and summary["axes"] == {}
    relabelled = pd.read_csv(run_dir / "train_labels.csv")
    assert len(relabelled) == 200 and relabelled.drawn.sum() == 100
    # Only labels that really changed count as corrupted (uniform draws keep about 1 in 10).
    assert (relabelled.corrupted == (relabelled.label != relabelled.original_label)).all()
    assert 75 <= relabelled.corrupted.sum() < 100
    done = json.loads((run_dir / "done.json").read_text())
    assert done["label_noise_mode"] == "uniform" and done["labels_drawn"] == 100
    assert done["labels_changed"] == relabelled.corrupted.sum()
    assert done["labels_changed_share"] == pytest.approx(relabelled.corrupted.mean())
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["control"]["label_noise_mode"] == "uniform"
    # The kept labels are learnable, the random ones are not (yet): clean accuracy is ahead.
    assert table.train_clean_acc.iloc[-1] > table.train_corrupted_acc.iloc[-1]


def test_label_noise_mode_is_part_of_the_run_identity(project):
    from overfitlab.identity import config_hash
    from overfitlab.identity import identity as run_identity

    default = run_identity(compose("train"), {"data_version": "v"})  # params.yaml without the key
    uniform = run_identity(compose("train", ["++train.label_noise_mode=uniform"]), {"data_version": "v"})
    assert default["control"]["label_noise_mode"] == "other"
    assert uniform["control"]["label_noise_mode"] == "uniform"
    assert config_hash(default) != config_hash(uniform)


@pytest.mark.slow
def test_bad_control_values_are_one_line_errors(prepared, project):
    for override, key in (
        ("train.label_noise=1.5", "train.label_noise"),
        ("train.pixels=blur", "train.pixels"),
        ("++train.label_noise_mode=flip", "train.label_noise_mode"),
    ):
        result = run_cli(sys.executable, "-m", "overfitlab.train", "model=model_a", override)
        assert result.returncode == 2 and key in result.stderr.strip().splitlines()[-1]
