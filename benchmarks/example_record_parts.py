"""What the per-example record adds to a run, part by part, timed in one process (immune to the
machine's load swings that make whole-stage A/B timings noisy here): per training chunk, the index
slice (TensorBatches, ``index=True``) and the record's index-put; per epoch, the copy of the record;
per run, the final eval-mode pass over the training set and writing ``train_examples.npz``.
Compared with one epoch of the real training path (``fitting.fit``) of the same model and data.

    python benchmarks/example_record_parts.py [MODEL ...]     # default: the default study's models

Prints, per model, microseconds per part and the record's share of a training run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, EPOCHS = 2000, 10  # the default study's training set and epochs


def timed(fn, repeats: int = 200) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(models: list[str]) -> None:
    from overfitlab import runs
    from overfitlab.data.datasets import PreparedDataset
    from overfitlab.training.fitting import fit

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = torch.rand(N_TRAIN, 1, 28, 28)  # as load_prepared gives them: float in [0, 1]
    labels = torch.from_numpy(rng.integers(0, 10, N_TRAIN))
    data = PreparedDataset(
        {"train": images, "val": images[:500], "test": images[:1000]},
        {"train": labels, "val": labels[:500], "test": labels[:1000]},
        {"in_channels": 1, "image_size": 28, "class_names": [str(i) for i in range(10)]},
    )
    chunk = 2048 // 32 * 32  # trainer.examples_per_step at batch 32: the whole split in one chunk
    order = torch.randperm(N_TRAIN)
    positions = torch.arange(N_TRAIN)
    hits = torch.zeros(N_TRAIN, dtype=torch.bool)
    hit = torch.rand(N_TRAIN) > 0.5
    chunks = -(-N_TRAIN // chunk)
    per_chunk = timed(lambda: positions[order[:chunk]]) + timed(lambda: hits.__setitem__(order, hit))
    per_epoch = chunks * per_chunk + timed(lambda: hits.clone())
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for model in models:
            cfg = compose("train", [f"model={model}", "trainer.progress_bar=false", f"train.epochs={EPOCHS}"])
            start = time.perf_counter()
            module = fit(cfg, data, threads=2).module
            run_seconds = time.perf_counter() - start
            predict = timed(lambda m=module: m.predict(images, 250), repeats=3)
            record = torch.stack(module.example_record).numpy()
            with tempfile.TemporaryDirectory() as directory:
                write = timed(
                    lambda d=directory, r=record: runs.write_train_examples(
                        Path(d), r, np.arange(N_TRAIN), labels.numpy(), labels.numpy()
                    ),
                    repeats=20,
                )
            added = EPOCHS * per_epoch + predict + write
            print(
                f"{model}: per epoch {1e6 * per_epoch:.0f} us (index + record, {chunks} chunk(s)), "
                f"final eval-mode pass {1e3 * predict:.1f} ms, npz {1e3 * write:.1f} ms; "
                f"training run {run_seconds:.1f} s ({EPOCHS} epochs): the record adds "
                f"{100 * added / run_seconds:.2f} %"
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp_300_100", "cnn_no_pool", "deep_network"])
