"""What augmentation costs the default study's training: paired, in one process.

    .venv/bin/python benchmarks/augment_cost.py [--reps 7] [--epochs 5]

For each model of the root params.yaml's study, trains seed 0 on its prepared data (run `dvc
repro prepare` first) with ``train.augment: none`` and with ``crop_flip``, alternating A/B/B/A so
that drift of a shared machine falls on both (after one warm-up fit), and prints the median wall
time of each and their ratio; the last line is the ratio of the summed medians (the default
study's training time with augmentation over without: the goal is <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(overrides: list[str]) -> float:
    from hydra import compose, initialize_config_dir

    from overfitlab.data.datasets import load_prepared
    from overfitlab.training.fitting import fit

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="bench"):
        cfg = compose("train", overrides)
    data = load_prepared(ROOT / "data/prepared/fashion_mnist")
    start = time.perf_counter()
    fit(cfg, data, threads=cfg.trainer.threads)
    return time.perf_counter() - start


def main() -> None:
    import yaml

    import overfitlab.resolvers  # noqa: F401

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    study = yaml.safe_load((ROOT / "params.yaml").read_text())["study"]
    totals = {"none": 0.0, "crop_flip": 0.0}
    for model in study["models"]:
        base = [
            f"model={model}",
            f"train.epochs={args.epochs}",
            "trainer.progress_bar=false",
            "trainer.threads=2",
        ]
        times: dict[str, list[float]] = {"none": [], "crop_flip": []}
        timed([*base, "train.augment=crop_flip"])  # warm-up: the process's first fit of a model is slower
        for rep in range(args.reps):
            order = ("none", "crop_flip") if rep % 2 == 0 else ("crop_flip", "none")
            for kind in order:
                times[kind].append(timed([*base, f"train.augment={kind}"]))
        medians = {k: statistics.median(v) for k, v in times.items()}
        for k in totals:
            totals[k] += medians[k]
        print(
            f"{model:16s} none {medians['none']:.2f} s, crop_flip {medians['crop_flip']:.2f} s: "
            f"ratio {medians['crop_flip'] / medians['none']:.3f}",
            file=sys.stderr,
        )
    print(f"default study: crop_flip / none = {totals['crop_flip'] / totals['none']:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
