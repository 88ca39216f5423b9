"""Randomization controls and memorization metrics, on small tensors with hand-computed answers."""

import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose, run_cli
from overfitlab.data.controls import apply_controls, control_tag, corrupt_labels
from overfitlab.training.module import ECE_BINS, calibration_counts, expected_calibration_error


def splits(n=40, classes=4):
    gen = torch.Generator().manual_seed(0)
    images = {s: torch.rand(n, 1, 5, 5, generator=gen) for s in ("train", "val", "test")}
    labels = {s: torch.arange(n) % classes for s in ("train", "val", "test")}
    return images, labels


@pytest.mark.parametrize("fraction,expected", [(0.0, 0), (0.25, 25), (0.333, 33), (1.0, 100)])
def test_label_corruption_changes_exactly_the_fraction_asked(fraction, expected):
    labels = torch.arange(100) % 10
    new, mask = corrupt_labels(labels, 10, fraction, np.random.default_rng(7))
    assert int(mask.sum()) == expected
    assert torch.equal(new[~mask], labels[~mask])  # untouched outside the mask
    again, mask_again = corrupt_labels(labels, 10, fraction, np.random.default_rng(7))
    assert torch.equal(again, new) and torch.equal(mask_again, mask)  # fixed by the data seed
    assert new.min() >= 0 and new.max() < 10


def test_controls_never_touch_validation_or_test_labels():
    images, labels = splits()
    originals = {s: l.clone() for s, l in labels.items()}
    mask = apply_controls(images, labels, 4, label_noise=1.0, pixels="none", data_seed=0)
    assert bool(mask.all())
    assert torch.equal(labels["val"], originals["val"]) and torch.equal(labels["test"], originals["test"])
    assert not torch.equal(labels["train"], originals["train"])


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


def test_training_with_random_labels_reports_clean_and_corrupted_accuracy(prepared, project):
    from overfitlab.train import train

    summary = train(compose("train", ["model=mlp_300_100", "train.label_noise=0.5", "train.epochs=3",
                                      "trainer.progress_bar=false"]))
    run_dir = project / "runs" / "fashion_mnist+labels0.5" / "mlp_300_100" / "seed=0"
    table = pd.read_csv(run_dir / "metrics.csv")
    assert {"train_clean_acc", "train_corrupted_acc", "test_conf_wrong", "test_ece"} <= set(table.columns)
    assert (table.dataset == "fashion_mnist+labels0.5").all() and summary["dataset"] == "fashion_mnist+labels0.5"
    relabelled = pd.read_csv(run_dir / "train_labels.csv")
    assert len(relabelled) == 200 and relabelled.corrupted.sum() == 100
    kept = relabelled[~relabelled.corrupted]
    assert (kept.label == kept.original_label).all()
    # The kept labels are learnable, the random ones are not (yet): clean accuracy is ahead.
    assert table.train_clean_acc.iloc[-1] > table.train_corrupted_acc.iloc[-1]


def test_bad_control_values_are_one_line_errors(prepared, project):
    for override, key in (("train.label_noise=1.5", "train.label_noise"), ("train.pixels=blur", "train.pixels")):
        result = run_cli(sys.executable, "-m", "overfitlab.train", "model=model_a", override)
        assert result.returncode == 2 and key in result.stderr.strip().splitlines()[-1]
