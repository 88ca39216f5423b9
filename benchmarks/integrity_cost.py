"""What the integrity checks of issue 30 cost, paired against the same work without them, in one
process (A/B/B/A, medians: this machine's speed drifts with other work):

* a checkpoint save: ``EpochCheckpoint``'s write (torch's CRC32 of each record, the records'
  digest beside it) against the save before it (CRC32 off, no digest), for the state of the default
  study's largest model (``cnn_no_pool``: weights, Adam's two moments, 10 000 test predictions);
* a resume's load (``EpochCheckpoint.load``: the records' digest and every CRC32 checked) against a
  bare ``torch.load``;
* the prepared-data check before a run (``data.verify.verify_prepared``: the arrays hashed against
  ``meta.json``'s ``data_version``) against loading them (``load_prepared``), on the default
  study's prepared data (``dvc repro prepare`` first).

    .venv/bin/python benchmarks/integrity_cost.py        # prints one JSON object
"""

from __future__ import annotations

import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from overfitlab.training.checkpoint import FORMAT

ROOT = Path(__file__).resolve().parents[1]


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def paired(a, b, repeats: int = 7) -> dict:
    """A/B/B/A medians of two callables and the ratio of the medians."""
    times = {"a": [], "b": []}
    for i in range(repeats):
        for name in "ab" if i % 2 == 0 else "ba":
            times[name] += timed(a if name == "a" else b, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"before_s": med["a"], "after_s": med["b"], "after_over_before": med["b"] / med["a"]}


def cnn_state() -> dict:
    from hydra import compose, initialize_config_dir

    import overfitlab.resolvers  # noqa: F401
    from overfitlab.data.datasets import load_prepared
    from overfitlab.training.fitting import build_net

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", ["model=cnn_no_pool"])
    net = build_net(cfg, load_prepared(ROOT / str(cfg.paths.prepared)))
    weights = net.state_dict()
    return {
        "format": FORMAT,
        "owners": ["benchmark"],
        "module": weights,
        "optimizers": [{"exp_avg": {k: torch.randn_like(v) for k, v in weights.items()},
                        "exp_avg_sq": {k: torch.rand_like(v) for k, v in weights.items()}}],
        "run_state": {"test_predictions": [torch.rand(10_000, 3)]},
    }  # fmt: skip


def main() -> None:
    from overfitlab.training.checkpoint import EpochCheckpoint

    state = cnn_state()
    directory = Path(tempfile.mkdtemp())
    old_path, new_path = directory / "old.pt", directory / "new.pt"

    def save_before() -> None:  # the save of ba5ebdd: CRC32 off, one write, no digest
        buffer = io.BytesIO()
        torch.serialization.set_crc32_options(False)
        try:
            torch.save(state, buffer)
        finally:
            torch.serialization.set_crc32_options(True)
        old_path.write_bytes(buffer.getbuffer())

    saving = EpochCheckpoint(new_path, ["benchmark"])
    saving.state = lambda trainer, module: state  # the same state as ``save_before``
    saving.saved_epoch = -1

    def save_after() -> None:
        saving.saved_epoch = -1
        trainer = type("T", (), {"current_epoch": 1})()
        saving.save(trainer, None)

    def load_before() -> None:
        torch.load(old_path, weights_only=True)

    def load_after() -> None:
        assert saving.load() is not None

    save_before(), save_after()  # warm up
    result = {
        "checkpoint_mb": os.path.getsize(new_path) / 1e6,
        "save": paired(save_before, save_after, 9),
        "load": paired(load_before, load_after, 9),
    }
    prepared = ROOT / "data/prepared/fashion_mnist"
    if (prepared / "meta.json").exists():  # the default study's (dvc repro prepare)
        from overfitlab.data.datasets import load_prepared
        from overfitlab.data.verify import verify_prepared

        load = statistics.median(timed(lambda: load_prepared(prepared), 7))
        verify = statistics.median(timed(lambda: verify_prepared(prepared), 7))
        result["prepared_data"] = {"load_s": load, "verify_s": verify, "verify_over_load": verify / load}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
