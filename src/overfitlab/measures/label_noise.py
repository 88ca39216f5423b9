"""``train_clean_acc`` / ``train_corrupted_acc``: the running training accuracy (against the labels
trained on) split into examples whose label was kept and those a randomization control replaced."""

from __future__ import annotations

import torch

from .sums import EpochSums


class LabelNoise:
    def __init__(self, **_) -> None:
        pass

    def on_train(
        self, sums: EpochSums, hit: torch.Tensor, corrupted: torch.Tensor | None = None, **_
    ) -> None:
        if corrupted is not None:
            sums.add("label_noise:clean", torch.stack([(hit & ~corrupted).sum(-1), (~corrupted).sum(-1)], -1))
            sums.add("label_noise:corrupted", torch.stack([(hit & corrupted).sum(-1), corrupted.sum(-1)], -1))

    def close(self, totals: dict, row: dict) -> None:
        for part in ("clean", "corrupted"):
            if f"label_noise:{part}" in totals:
                correct, n = totals[f"label_noise:{part}"].tolist()
                row[f"train_{part}_acc"] = correct / n if n else float("nan")
