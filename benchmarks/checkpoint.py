"""What the per-epoch checkpoint (``trainer.checkpoint``, ``training/checkpoint.py``) costs a run
of the default study: its size and the time of each save, against the run's training time.

The default study's runs (params.yaml: Fashion-MNIST, 2 000 training images, 10 epochs; its three
models, seed 0), each trained with and without the checkpoint, the two in alternating order
(paired: this VM's speed drifts with other work), ``--repeats`` times. Two measures of the cost:
the time spent inside the saves (timed around each one: immune to the drift) and the paired
difference of the fits' wall times (includes everything, and the drift). Medians throughout.

    .venv/bin/python benchmarks/checkpoint.py               # writes benchmarks/results_checkpoint.json
    .venv/bin/python benchmarks/checkpoint.py --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mlp_300_100", "cnn_no_pool", "deep_network")


def compose(model: str, threads: int):
    import os

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import overfitlab.resolvers  # noqa: F401

    os.chdir(ROOT)  # the default study's params.yaml
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return hydra_compose(
            "train", [f"model={model}", "seed=0", "trainer.progress_bar=false", f"trainer.threads={threads}"]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the default study: the cores)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results_checkpoint.json"))
    args = parser.parse_args()

    from overfitlab.data.datasets import load_prepared
    from overfitlab.machine import hardware
    from overfitlab.training.checkpoint import EpochCheckpoint
    from overfitlab.training.fitting import fit

    class Timed(EpochCheckpoint):
        def save(self, trainer, module) -> None:
            before, start = self.saved_epoch, time.perf_counter()
            super().save(trainer, module)
            if self.saved_epoch != before:
                self.seconds.append(time.perf_counter() - start)
                self.size = self.path.stat().st_size

    results: dict = {}
    data = None
    for model in MODELS:
        cfg = compose(model, args.threads)
        data = data or load_prepared(ROOT / str(cfg.paths.prepared))
        plain, saving, saves, sizes, epochs = [], [], [], [], int(cfg.trainer.max_epochs)
        for repeat in range(args.repeats + 1):  # the first pair warms up, not counted
            with tempfile.TemporaryDirectory() as tmp:
                callback = Timed(Path(tmp) / "checkpoint.pt", ["benchmark"])
                callback.seconds, callback.size = [], 0
                order = [False, True] if repeat % 2 else [True, False]
                walls = {}
                for with_checkpoint in order:
                    start = time.perf_counter()
                    fit(
                        cfg, data, extra_callbacks=[callback] if with_checkpoint else [], threads=args.threads
                    )
                    walls[with_checkpoint] = time.perf_counter() - start
            if repeat == 0:
                continue
            plain.append(walls[False])
            saving.append(walls[True])
            saves.append(sum(callback.seconds))
            sizes.append(callback.size)
            print(
                f"{model} #{repeat}: fit {walls[False]:.2f} s plain, {walls[True]:.2f} s with checkpoint; "
                f"{len(callback.seconds)} saves, {sum(callback.seconds) * 1000:.0f} ms, "
                f"{callback.size / 1e6:.2f} MB",
                flush=True,
            )
        results[model] = {
            "epochs": epochs,
            "fit_s_median": statistics.median(plain),
            "fit_with_checkpoint_s_median": statistics.median(saving),
            "paired_difference_s_median": statistics.median(b - a for a, b in zip(plain, saving)),
            "saves_per_run": epochs,
            "save_s_per_run_median": statistics.median(saves),
            "save_ms_per_epoch_median": statistics.median(saves) / epochs * 1000,
            "checkpoint_bytes": statistics.median(sizes),
            "share_of_fit_from_saves": statistics.median(saves) / statistics.median(plain),
            "share_of_fit_paired": statistics.median(b - a for a, b in zip(plain, saving))
            / statistics.median(plain),
        }
        print(json.dumps({model: results[model]}, indent=2), flush=True)
    total_fit = sum(r["fit_s_median"] for r in results.values())
    summary = {
        "what": "default study (3 models x seed 0, 10 epochs, 2000 training images), with vs without "
        "trainer.checkpoint, paired, medians",
        "repeats": args.repeats,
        "threads": args.threads,
        "share_of_train_time_from_saves": sum(r["save_s_per_run_median"] for r in results.values())
        / total_fit,
        "share_of_train_time_paired": sum(r["paired_difference_s_median"] for r in results.values())
        / total_fit,
        "machine": {**hardware(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "models": results,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "models"}, indent=2))


if __name__ == "__main__":
    main()
