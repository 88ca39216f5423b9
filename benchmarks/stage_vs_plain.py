"""The default study's train stage against a hand-written plain PyTorch loop doing the same work,
paired (issue 30, item 10): does everything the project adds around training (Hydra, Lightning,
MLflow, checkpoints, the per-example record, the integrity checks, the run files) cost time?

Both variants train the study of ``params.yaml`` (its models x ``--seeds``, its epochs, batch size and
learning rate) on its prepared data, with the same thread count:

* **project**: the train stage's own command (``python -m overfitlab.train --multirun``, what
  ``dvc repro`` runs), into a fresh runs directory each time (one MLflow SQLite store, created
  before the first is timed, as a user's store exists after their first stage);
* **plain**: one process, a loop as a user writes it: the same nets (built from the project's model
  configs), torch's default ``Adam``, minibatches of a random permutation, and after every epoch
  the training loss and accuracy, an evaluation of the validation and test sets, a row of a
  ``metrics.csv`` per run, and the final test predictions saved.

The two commands alternate (A B B A ...), each timed as a whole process (interpreter start
included); the ratio reported is plain / project, per pair and its median (>= 1: the project is as
fast). Per-phase times of the project are read from its runs' ``done.json`` (``wall_time_s``: the fit).

    .venv/bin/python benchmarks/stage_vs_plain.py                  # 2 pairs, seeds 0-4 (~20 min quiet)
    .venv/bin/python benchmarks/stage_vs_plain.py --pairs 3 --seeds 0,1
    .venv/bin/python benchmarks/stage_vs_plain.py --project-args trainer.checkpoint=false

Needs ``data/prepared`` (``dvc repro prepare``). Writes ``benchmarks/results_stage_vs_plain.json``.
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

import yaml

from overfitlab.machine import hardware

ROOT = Path(__file__).resolve().parents[1]


def plain(seeds: list[int], threads: int, out: Path) -> None:
    """The hand-written loop over the study's models and ``seeds`` (run in its own process)."""
    import numpy as np
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    torch.set_num_threads(threads)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    train = params["train"]
    dataset = params["study"]["datasets"][0]
    prepared = ROOT / "data" / "prepared" / dataset
    meta = json.loads((prepared / "meta.json").read_text())

    def split(name):
        x = torch.from_numpy(np.load(prepared / f"{name}_images.npy")).float().div_(255.0)
        return x, torch.from_numpy(np.load(prepared / f"{name}_labels.npy")).long()

    data = {name: split(name) for name in ("train", "val", "test")}

    def evaluate(net, x, y):
        net.eval()
        loss, predictions = 0.0, []
        with torch.no_grad():
            for images, labels in zip(x.split(250), y.split(250), strict=True):
                logits = net(images)
                loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
                predictions.append(logits.argmax(1))
        predictions = torch.cat(predictions)
        return loss / len(y), (predictions == y).float().mean().item(), predictions

    for model in params["study"]["models"]:
        net_cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{model}.yaml").net
        for seed in seeds:
            began = time.perf_counter()
            torch.manual_seed(seed)
            net = instantiate(
                net_cfg,
                in_channels=int(meta["in_channels"]),
                image_size=int(meta["image_size"]),
                num_classes=len(meta["class_names"]),
            )
            optimizer = torch.optim.Adam(net.parameters(), lr=train["lr"])
            x, y = data["train"]
            rows = []
            for epoch in range(1, train["epochs"] + 1):
                net.train()
                order = torch.randperm(len(y))
                total, correct = 0.0, 0
                for start in range(0, len(y), train["batch_size"]):
                    index = order[start : start + train["batch_size"]]
                    logits = net(x[index])
                    loss = torch.nn.functional.cross_entropy(logits, y[index])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(index)
                    correct += (logits.argmax(1) == y[index]).sum().item()
                row = {"epoch": epoch, "train_loss": total / len(y), "train_acc": correct / len(y)}
                for name in ("val", "test"):
                    row[f"{name}_loss"], row[f"{name}_acc"], predictions = evaluate(net, *data[name])
                rows.append(row)
            run_dir = out / model / f"seed={seed}"
            run_dir.mkdir(parents=True)
            lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
            (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
            np.save(run_dir / "test_predictions.npy", predictions.numpy())
            seconds = time.perf_counter() - began
            print(f"{model} seed={seed}: test {rows[-1]['test_acc']:.4f}, {seconds:.1f} s", flush=True)


def timed(command: list[str], env: dict) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def fit_walls(runs: Path) -> float:
    """The sum of the project's runs' fit times (``done.json``'s ``wall_time_s``)."""
    return sum(json.loads(p.read_text())["wall_time_s"] for p in runs.rglob("done.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--project-args", nargs="*", default=[], help="overrides for the project")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_stage_vs_plain.json"))
    parser.add_argument("--plain-only", metavar="DIR", help=argparse.SUPPRESS)  # the plain variant's process
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.plain_only:
        plain(seeds, args.threads, Path(args.plain_only))
        return

    study_seeds = yaml.safe_load((ROOT / "params.yaml").read_text())["study"]["seeds"]
    results = []
    with tempfile.TemporaryDirectory(prefix="stage-vs-plain-") as scratch:
        scratch = Path(scratch)
        # One MLflow store for all the project's stages, created before the first is timed: a user's
        # store exists after their first stage (creating one costs a few seconds, once).
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{scratch}/mlflow.db")
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"],
                       env=env, check=True)  # fmt: skip
        for pair in range(args.pairs):
            times = {}
            order = ("project", "plain") if pair % 2 == 0 else ("plain", "project")
            for variant in order:
                runs = scratch / f"{variant}-{pair}" / "runs"
                if variant == "plain":
                    command = [sys.executable, __file__, "--plain-only", str(runs)]
                    command += ["--seeds", args.seeds, "--threads", str(args.threads)]
                else:  # the train stage's command (dvc.yaml), its runs elsewhere
                    command = [sys.executable, "-m", "overfitlab.train", "--multirun", "hydra/launcher=local"]
                    command += ["optimizer=adam", f"paths.runs={runs}", f"trainer.threads={args.threads}"]
                    command += [] if seeds == study_seeds else [f"seed={args.seeds}"]
                    command += args.project_args
                times[variant] = timed(command, env)
            fits = fit_walls(scratch / f"project-{pair}" / "runs")
            ratio = times["plain"] / times["project"]
            results.append({**times, "project_fits": fits, "ratio": ratio})
            print(
                f"pair {pair + 1}: plain {times['plain']:.1f} s, project {times['project']:.1f} s "
                f"(fits {fits:.1f} s), ratio plain/project {ratio:.3f}",
                flush=True,
            )
    summary = {
        "machine": hardware().get("cpu_model") or platform.machine(),
        "seeds": seeds,
        "threads": args.threads,
        "project_args": args.project_args,
        "pairs": results,
        "median_ratio": statistics.median(r["ratio"] for r in results),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"median ratio plain/project: {summary['median_ratio']:.3f} ({args.out})")


if __name__ == "__main__":
    main()
