"""Training throughput of the project's training path vs a plain PyTorch loop (images/s).

Each (variant, model, batch size) runs in its own process, one after the other, on the same
in-memory data (28x28x1, 10 classes, like Fashion-MNIST; content does not change speed), with
the same optimizer (Adam) and thread count. The project's number is measured inside its real
path (``overfitlab.training.fitting.fit``: Lightning Trainer, TensorBatches, on-device metric sums, progress
bar) from the start of each training epoch to the end of its last training step, so the
per-epoch validation/test passes are not counted; the plain loop is written here.

    python benchmarks/throughput.py              # all three tables + ratios, writes benchmarks/results.json
    python benchmarks/throughput.py --repeats 5  # more repeats -> steadier medians
    python benchmarks/throughput.py --part seeds # only the multi-seed table (writes results_seeds.json)
    python benchmarks/throughput.py --part paired  # project/plain from paired epochs in one process
                                                 # (immune to this VM's slow phases; results_paired.json)
    python benchmarks/throughput.py --plain-numerics project  # plain loop with the project's
                                                 # deterministic kernels and no TF32 (matters on a GPU)
    python benchmarks/throughput.py --plain-optimizer project # plain loop with the project's Adam
                                                 # options (fused): the path's overhead alone

The multi-seed table trains N seeds of a model (``--seed-models``, the deep network) and compares
the total images/s, i.e. seeds per hour, of: the plain loop one seed after another on all threads
(the reference), the project's vectorized mode (``trainer.vectorize_seeds``, all seeds as one
model; one row per N of ``--seeds``) and, on a CPU, two single-thread processes side by side (each
training its seeds with the plain loop, or with the project's path as
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` does, or vectorizing half of the seeds each).
Steady state: start-up and the first epoch of each process are not counted. On a GPU:

    python benchmarks/throughput.py --accelerator gpu --seeds 8 32 --seed-models deep_network mlp_300_100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 4000
SEEDS_TABLE_EPOCHS = 4  # the deep network: ~2 s per epoch on the CPU


def make_prepared(directory: Path) -> None:
    """A prepared-dataset directory in the layout `prepare` writes (random pixels)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", 100), ("test", 100)):
        np.save(directory / f"{split}_images.npy", rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8))
        np.save(directory / f"{split}_labels.npy", rng.integers(0, 10, n).astype(np.int64))
    (directory / "meta.json").write_text(
        json.dumps(
            {
                "class_names": [str(i) for i in range(10)],
                "in_channels": 1,
                "image_size": 28,
                "data_version": "bench",
            }
        )
    )


def plain_epoch_trainer(model: str, batch: int, threads: int):
    """The reference, a hand-written loop over in-memory tensors: set up, returns a function that
    trains one epoch and returns its seconds."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from overfitlab.data.datasets import load_prepared

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if os.environ.get("BENCH_PLAIN_NUMERICS") == "project":  # --plain-numerics project
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if os.environ.get("BENCH_ACCELERATOR") == "gpu" else "cpu")
    data = load_prepared(os.environ["BENCH_DATA"])
    net = instantiate(
        OmegaConf.load(ROOT / "conf/model" / f"{model}.yaml").net,
        in_channels=1,
        image_size=28,
        num_classes=10,
    ).to(device)
    options = {}  # --plain-optimizer torch: torch's default Adam, as a plain loop writes it
    if os.environ.get("BENCH_PLAIN_OPTIMIZER") == "project":  # the options conf/optimizer/adam.yaml sets
        adam = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/optimizer/adam.yaml"))  # unresolved
        options = {k: v for k, v in adam.items() if not k.startswith("_") and k != "lr"}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, **options)
    x, y = data.images["train"].to(device), data.labels["train"].to(device)

    def epoch() -> float:
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(y), device=device)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return epoch


def plain(model: str, batch: int, epochs: int, threads: int) -> list[float]:
    """The plain loop alone: images/s of each epoch after the first (warm-up)."""
    epoch = plain_epoch_trainer(model, batch, threads)
    seconds = [epoch() for _ in range(epochs)]
    return [N_TRAIN / s for s in seconds[1:]]


def _epoch_seconds(
    model: str, batch: int, epochs: int, threads: int, seeds: int, before_epoch=None
) -> list[float]:
    """Train with the project's real path (``fit``, or ``fit_seeds`` for several seeds at once); the
    time of each training epoch after the first, timed by a Lightning callback (``before_epoch`` is
    called, untimed, at the start of each epoch)."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir

    import overfitlab.resolvers  # noqa: F401
    from overfitlab.data.datasets import load_prepared
    from overfitlab.training import fitting as train_stage

    seconds: list[float] = []

    def now() -> float:
        if torch.cuda.is_available():  # GPU work is asynchronous: wait for it before reading the clock
            torch.cuda.synchronize()
        return time.perf_counter()

    class EpochTimer(L.Callback):
        """From an epoch's start to the end of its last training step (evaluation not counted)."""

        def on_train_epoch_start(self, trainer, module):
            if before_epoch is not None:
                before_epoch()
            self.start = now()

        def on_validation_epoch_start(self, trainer, module):  # right after the last training step
            if getattr(self, "start", None) is not None:
                seconds.append(now() - self.start)
                self.start = None

    os.chdir(ROOT)
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfgs = [
            compose(
                "train",
                [
                    f"model={model}",
                    f"train.batch_size={batch}",
                    f"train.epochs={epochs}",
                    f"trainer.threads={threads}",
                    f"trainer.accelerator={os.environ['BENCH_ACCELERATOR']}",
                    f"seed={seed}",
                ],
            )
            for seed in range(seeds)
        ]
    data = load_prepared(os.environ["BENCH_DATA"])
    if seeds == 1:
        train_stage.fit(cfgs[0], data, extra_callbacks=[EpochTimer()])
    else:
        train_stage.fit_seeds(cfgs, data, [None] * seeds, extra_callbacks=[EpochTimer()])
    return seconds[1:]  # first epoch is warm-up


def project(model: str, batch: int, epochs: int, threads: int) -> list[float]:
    """The project's real training path (one seed), images/s of each epoch after the first."""
    return [N_TRAIN / s for s in _epoch_seconds(model, batch, epochs, threads, seeds=1)]


def paired(model: str, batch: int, epochs: int, threads: int) -> list[float]:
    """Project/plain speed of paired epochs in one process: before each training epoch of the
    project's path, one epoch of the plain loop (its own net and optimizer) is timed. A slow phase
    of this VM (it halves a process's speed for seconds at a time) then hits both halves of a pair."""
    plain_epoch = plain_epoch_trainer(model, batch, threads)
    plain_seconds: list[float] = []
    project_seconds = _epoch_seconds(
        model, batch, epochs, threads, seeds=1, before_epoch=lambda: plain_seconds.append(plain_epoch())
    )
    return [mine / theirs for mine, theirs in zip(plain_seconds[1:], project_seconds)]


def vectorized(model: str, batch: int, epochs: int, threads: int, seeds: int) -> list[float]:
    """The project's vectorized path (``trainer.vectorize_seeds``): all seeds' img/s together, per epoch."""
    return [seeds * N_TRAIN / s for s in _epoch_seconds(model, batch, epochs, threads, seeds)]


def measure_in_subprocess(variant: str, *args, processes: int = 1) -> list[list[float]]:
    """``variant(*args)`` in ``processes`` fresh processes started together; each one's per-epoch images/s."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import throughput as t; "
        f"print(json.dumps(t.{variant}(*{args!r})))"
    )
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(processes)
    ]
    epochs = []
    for process in running:
        out, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{variant}{args} failed:\n{err[-2000:]}")
        epochs.append(json.loads(out.strip().splitlines()[-1]))
    return epochs


def typical(epochs: list[list[float]]) -> float:
    """Images/s of concurrent processes together, each at its median epoch."""
    return sum(statistics.median(e) for e in epochs)


def best(epochs: list[list[float]]) -> float:
    """Images/s of one process in its fastest epoch: the code's speed when this VM is in its fast
    phase (timeit's rule: slower repetitions are interference, not the code)."""
    (only,) = epochs
    return max(only)


def epochs_to_time(model: str, batch: int, args) -> int:
    """Epochs per process: ``--epochs``, or enough for ~``--timed-seconds`` of timed epochs after
    the warm-up one (at least 3), from a short plain-loop run. A small model's epoch lasts tens of
    milliseconds: three of them are a fraction of a second, less than this VM's slow phases."""
    if args.epochs:
        return args.epochs
    images_per_second = typical(measure_in_subprocess("plain", model, batch, 2, args.threads))
    return 1 + max(3, math.ceil(args.timed_seconds * images_per_second / N_TRAIN))


def throughput_table(args) -> list[dict]:
    """The project's path vs the plain loop, one seed, images/s (benchmarks/README.md's first table)."""
    rows = []
    for model in args.models:
        for batch in args.batches:
            epochs = epochs_to_time(model, batch, args)
            runs = {"plain": [], "project": []}
            for repeat in range(args.repeats):  # alternate A B, B A, ...: drifts of a noisy machine hit both
                for variant in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
                    runs[variant].append(measure_in_subprocess(variant, model, batch, epochs, args.threads))
            row = {"model": model, "batch": batch, "epochs": epochs}
            for statistic in (typical, best):  # per process, then the median over processes
                value = {variant: statistics.median(map(statistic, runs[variant])) for variant in runs}
                suffix = "" if statistic is typical else "_best_epoch"
                row.update(
                    {
                        f"plain{suffix}_img_s": value["plain"],
                        f"project{suffix}_img_s": value["project"],
                        f"ratio{suffix}": value["project"] / value["plain"],
                    }
                )
            row["all_epochs"] = {
                variant: [e for (e,) in per_process] for variant, per_process in runs.items()
            }
            rows.append(row)
            print(
                f"{model:>14} batch {batch:>4} ({epochs} epochs): plain {row['plain_img_s']:7.0f} img/s, "
                f"project {row['project_img_s']:7.0f} img/s, ratio {row['ratio']:.2f} | fastest epochs: "
                f"plain {row['plain_best_epoch_img_s']:7.0f}, "
                f"project {row['project_best_epoch_img_s']:7.0f}, "
                f"ratio {row['ratio_best_epoch']:.2f}",
                flush=True,
            )
    return rows


def paired_table(args) -> list[dict]:
    """The ratio project/plain from paired epochs in one process (``paired``): immune to the VM's
    slow phases, which per-process medians only average over."""
    rows = []
    for model in args.models:
        for batch in args.batches:
            epochs = epochs_to_time(model, batch, args)
            per_process = [
                ratios
                for _ in range(args.repeats)
                for ratios in measure_in_subprocess("paired", model, batch, epochs, args.threads)
            ]
            row = {
                "model": model,
                "batch": batch,
                "epochs": epochs,
                "ratio": statistics.median(statistics.median(r) for r in per_process),
                "per_process": [statistics.median(r) for r in per_process],
                "all_pairs": per_process,
            }
            rows.append(row)
            print(
                f"{model:>14} batch {batch:>4} ({epochs} epochs), paired epochs: ratio {row['ratio']:.3f} "
                f"(processes: {', '.join(f'{r:.3f}' for r in row['per_process'])})",
                flush=True,
            )
    return rows


def seeds_table(args) -> list[dict]:
    """N seeds of one model: total images/s (= seeds per hour x epoch size x epochs / 3600) of each
    mechanism vs training them one after another with the plain loop on all threads.

    On a CPU also two single-thread processes side by side (the joblib launcher's way of using two
    cores); on a GPU the vectorized mode for each N of ``--seeds`` (the GPU is idle with one small model).
    """
    epochs = args.epochs or SEEDS_TABLE_EPOCHS
    mechanisms = {
        "sequential plain": ("plain", (epochs, args.threads), 1)
    }  # name: (function, args, processes)
    for n in args.seeds:
        mechanisms[f"vectorized {n} seeds"] = ("vectorized", (epochs, args.threads, n), 1)
    if args.accelerator == "cpu":
        half = max(args.seeds) // 2
        mechanisms.update(
            {
                "2 processes x 1 thread, plain": ("plain", (epochs, 1), 2),
                "2 processes x 1 thread, project (joblib n_jobs=2)": ("project", (epochs, 1), 2),
                f"2 processes x 1 thread, vectorized {half} seeds each": ("vectorized", (epochs, 1, half), 2),
            }
        )
    rows = []
    for model in args.seed_models:
        for batch in args.seed_batches:
            runs: dict[str, list[float]] = {name: [] for name in mechanisms}
            for repeat in range(args.repeats):  # alternating the order, as in throughput_table
                for name in list(mechanisms) if repeat % 2 == 0 else list(mechanisms)[::-1]:
                    variant, extra, processes = mechanisms[name]
                    runs[name].append(
                        typical(measure_in_subprocess(variant, model, batch, *extra, processes=processes))
                    )
            reference = statistics.median(runs["sequential plain"])
            for name, values in runs.items():
                row = {
                    "model": model,
                    "batch": batch,
                    "mechanism": name,
                    "img_s": statistics.median(values),
                    "speedup": statistics.median(values) / reference,
                    "all": values,
                }
                rows.append(row)
                print(
                    f"{model:>14} batch {batch:>4}, {name:<52} {row['img_s']:8.0f} img/s, "
                    f"speed-up {row['speedup']:.2f}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "throughput", "paired", "seeds"], default="all")
    parser.add_argument("--models", nargs="+", default=["deep_network", "mlp_300_100"])
    parser.add_argument("--batches", nargs="+", type=int, default=[20, 128])
    parser.add_argument(
        "--seed-models", nargs="+", default=["deep_network"], help="models of the multi-seed table"
    )
    parser.add_argument("--seed-batches", nargs="+", type=int, default=[20, 128])
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[4],
        help="seeds trained at once in the multi-seed table (several: one row each)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="per process, the first is warm-up; default: enough for "
        "--timed-seconds in the throughput and paired tables, 4 in the seeds table",
    )
    parser.add_argument(
        "--timed-seconds",
        type=float,
        default=3.0,
        help="throughput and paired tables: timed training per process when --epochs is not given",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--accelerator",
        choices=["cpu", "gpu"],
        default="cpu",
        help="gpu: both the plain loop and the project on CUDA",
    )
    parser.add_argument(
        "--plain-numerics",
        choices=["torch", "project"],
        default="torch",
        help="the plain loop with torch's defaults, or with the numerics the project pins "
        "(deterministic kernels, no TF32: what a GPU run pays for reproducibility)",
    )
    parser.add_argument(
        "--plain-optimizer",
        choices=["torch", "project"],
        default="torch",
        help="the plain loop's Adam: torch's default implementation, or with the options "
        "conf/optimizer/adam.yaml sets (fused): the project's path without its optimizer's gain",
    )
    parser.add_argument(
        "--out", help="default: benchmarks/results[_seeds|_paired][_plain_project_optimizer].json"
    )
    args = parser.parse_args()
    default_name = (
        "results"
        + (f"_{args.part}" if args.part in ("seeds", "paired") else "")
        + ("_plain_project_optimizer" if args.plain_optimizer == "project" else "")
        + ".json"
    )
    args.out = args.out or str(ROOT / "benchmarks" / default_name)
    os.environ["BENCH_ACCELERATOR"] = args.accelerator
    os.environ["BENCH_PLAIN_NUMERICS"] = args.plain_numerics
    os.environ["BENCH_PLAIN_OPTIMIZER"] = args.plain_optimizer

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_prepared(Path(tmp))
        os.environ["BENCH_DATA"] = tmp
        if args.part in ("all", "throughput"):
            results["rows"] = throughput_table(args)
        if args.part in ("all", "paired"):
            results["paired"] = paired_table(args)
        if args.part in ("all", "seeds"):
            results["seeds"] = seeds_table(args)
    import torch

    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    machine = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": machine,
                "n_train": N_TRAIN,
                "epochs": args.epochs,
                "timed_seconds": args.timed_seconds,
                "repeats": args.repeats,
                "plain_numerics": args.plain_numerics,
                "plain_optimizer": args.plain_optimizer,
                **results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
