"""Training throughput of the project's training path vs a plain PyTorch loop (images/s).

Each (variant, model, batch size) runs in its own process, one after the other, on the same
in-memory data (28x28x1, 10 classes, like Fashion-MNIST; content does not change speed), with
the same optimizer (Adam) and thread count. The project's number is measured inside its real
path (``overfitlab.train.fit``: Lightning Trainer, TensorBatches, on-device metric sums, progress
bar) from the start of each training epoch to the end of its last training step, so the
per-epoch validation/test passes are not counted; the plain loop is written here.

    python benchmarks/throughput.py              # table + ratios, writes benchmarks/results.json
    python benchmarks/throughput.py --repeats 5  # more repeats -> steadier medians
"""

from __future__ import annotations

import argparse
import json
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


def make_prepared(directory: Path) -> None:
    """A prepared-dataset directory in the layout `prepare` writes (random pixels)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", 100), ("test", 100)):
        np.save(directory / f"{split}_images.npy", rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8))
        np.save(directory / f"{split}_labels.npy", rng.integers(0, 10, n).astype(np.int64))
    (directory / "meta.json").write_text(json.dumps(
        {"class_names": [str(i) for i in range(10)], "in_channels": 1, "image_size": 28, "data_version": "bench"}))


def plain(model: str, batch: int, epochs: int, threads: int) -> float:
    """The reference: a hand-written loop over in-memory tensors."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from overfitlab.data import load_prepared

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = load_prepared(os.environ["BENCH_DATA"])
    net = instantiate(OmegaConf.load(ROOT / "conf/model" / f"{model}.yaml").net,
                      in_channels=1, image_size=28, num_classes=10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.images["train"], data.labels["train"]
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return N_TRAIN / statistics.median(seconds[1:])  # first epoch is warm-up


def project(model: str, batch: int, epochs: int, threads: int) -> float:
    """The project's real training path, timed per training epoch by a Lightning callback."""
    import lightning as L
    from hydra import compose, initialize_config_dir

    import overfitlab  # noqa: F401
    from overfitlab import train as train_stage
    from overfitlab.data import load_prepared

    seconds: list[float] = []

    class EpochTimer(L.Callback):
        """From an epoch's start to the end of its last training step (evaluation not counted)."""

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.last = time.perf_counter()

        def on_validation_epoch_start(self, trainer, module):
            if getattr(self, "start", None) is not None:
                seconds.append(self.last - self.start)
                self.start = None

    os.chdir(ROOT)
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", [f"model={model}", f"train.batch_size={batch}", f"train.epochs={epochs}",
                                f"trainer.threads={threads}", "trainer.accelerator=cpu"])
    data = load_prepared(os.environ["BENCH_DATA"])
    train_stage.fit(cfg, data, extra_callbacks=[EpochTimer()])
    return N_TRAIN / statistics.median(seconds[1:])


def measure_in_subprocess(variant: str, model: str, batch: int, epochs: int, threads: int) -> float:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import throughput as t; "
            f"print(t.{variant}({model!r}, {batch}, {epochs}, {threads}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deep_network", "mlp_300_100"])
    parser.add_argument("--batches", nargs="+", type=int, default=[20, 128])
    parser.add_argument("--epochs", type=int, default=4, help="per measurement; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/project runs per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_prepared(Path(tmp))
        os.environ["BENCH_DATA"] = tmp
        for model in args.models:
            for batch in args.batches:
                runs = {"plain": [], "project": []}
                for _ in range(args.repeats):  # alternate, so drifts of a noisy machine hit both
                    for variant in runs:
                        runs[variant].append(measure_in_subprocess(variant, model, batch, args.epochs, args.threads))
                row = {"model": model, "batch": batch,
                       "plain_img_s": statistics.median(runs["plain"]),
                       "project_img_s": statistics.median(runs["project"]),
                       "ratio_of_medians": statistics.median(runs["project"]) / statistics.median(runs["plain"]),
                       "all": runs}
                rows.append(row)
                print(f"{model:>14} batch {batch:>4}: plain {row['plain_img_s']:7.0f} img/s, project "
                      f"{row['project_img_s']:7.0f} img/s, ratio {row['ratio_of_medians']:.2f}", flush=True)
    import torch

    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        cpu = names[0] if names else cpu
    machine = {"cpu": cpu, "cores": os.cpu_count(),
               "threads": args.threads, "torch": torch.__version__, "python": platform.python_version()}
    Path(args.out).write_text(json.dumps({"machine": machine, "n_train": N_TRAIN, "epochs": args.epochs,
                                          "repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
