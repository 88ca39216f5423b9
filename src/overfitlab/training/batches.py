"""Training and evaluation batches sliced from in-memory tensors (the splits of ``PreparedDataset``)."""

from __future__ import annotations

import torch


class TensorBatches:
    """Whole batches sliced from in-memory tensors: no per-sample ``__getitem__`` or collate.

    With ``shuffle`` a fresh permutation is drawn each epoch from a generator seeded once, so
    the data order is fixed by the seed and differs between epochs. With ``index`` batches carry
    each example's position in the split after the labels (the per-example record needs it), and
    with ``flags`` (one bool per example, e.g. "label corrupted") then the flags:
    (images, labels[, index][, flags]).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        flags: torch.Tensor | None = None,
        index: bool = False,
    ):
        self.labels, self.batch_size, self.shuffle = labels, batch_size, shuffle
        positions = [torch.arange(len(labels), device=labels.device)] if index else []
        self.tensors = (images, labels, *positions, *([] if flags is None else [flags]))
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.labels)
        # Drawn on the CPU whatever the device, so a seed's data order is the same on a GPU.
        order = torch.randperm(n, generator=self.generator).to(self.labels.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                idx = order[start : start + self.batch_size]
                yield tuple(t[idx] for t in self.tensors)


class SeedBatches:
    """Several seeds' training batches at once: batch i stacks every seed's own batch i.

    Each loader keeps its seed's order (a ``TensorBatches`` seeded as in a run of that seed alone);
    all have the same length and batch sizes, so the result is (seeds, batch, ...) per tensor.
    """

    def __init__(self, loaders: list[TensorBatches]):
        self.loaders = loaders

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders):
            yield tuple(torch.stack(parts) for parts in zip(*batches))
