"""``test_conf_wrong``: fraction of test images predicted wrongly with confidence >= 0.9 (the source
study's "confidently wrong"); ``test_ece``: expected calibration error of the test predictions
(15 equal-width confidence bins)."""

from __future__ import annotations

import torch

from .sums import EpochSums

CONFIDENT = 0.9
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


class Calibration:
    def __init__(self, **_) -> None:
        pass

    def on_eval(self, sums: EpochSums, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        if name == "test":
            confidence, predicted = logits.softmax(1).max(1)
            sums.add("calibration", calibration_counts(confidence, predicted, y))

    def close(self, totals: dict, row: dict) -> None:
        counts = totals.get("calibration")
        if counts is not None:
            row["test_conf_wrong"] = float(counts[0]) / float(counts[1 : 1 + ECE_BINS].sum())
            row["test_ece"] = expected_calibration_error(counts)
