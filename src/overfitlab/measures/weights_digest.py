"""A digest of the weights after every epoch (``done.json``'s ``weights_digests``): what a canary
compares to show that a change left a run's trajectory bit-identical (``overfitlab.accept``)."""

from __future__ import annotations

import hashlib

import torch


def weights_digest(tensors) -> str:
    """sha256 over the tensors' bytes, in order (16 hex digits)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class WeightsDigest:
    def __init__(self, **_) -> None:
        self.digests: list[str] = []

    def keep(self, weights) -> None:
        self.digests.append(weights_digest(weights))

    def state(self) -> dict:
        return {"weights_digests": list(self.digests)}

    def restore(self, state: dict) -> None:
        self.digests = list(state.get("weights_digests", []))
