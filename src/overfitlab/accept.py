"""Accept a change to hashed code that moves no number, with proof instead of a retrain.

    python -m overfitlab.accept             # in a study: a canary of 2 epochs per group
    python -m overfitlab.accept --epochs 5  # a longer canary
    python -m overfitlab.accept --full      # each group's canary trains its whole run
    python -m overfitlab.accept --dry-run   # which runs are stale and why; trains nothing

A refactor, a rename or a faster path of the training code changes the code hash of every run it
touches (``identity.code_hash``), so those runs count as stale. Training is deterministic, so a
short canary can show the change moved no number: for each group of stale runs (dataset, model,
axis values) whose settings are the study's and whose only difference is the code, the group's
first seed is retrained for its first epochs with today's code, in a scratch directory. Where
every per-epoch metric the stored run has, and the digest of the weights after each epoch (runs
that recorded them: ``measures/weights_digest.py``), are bit-identical, each run of the group is
re-stamped with today's hash and the canary is recorded in its ``done.json`` (``accepted``);
otherwise what differs is listed and nothing of that group is accepted (the next ``dvc repro``
retrains it). Then ``dvc repro`` retrains nothing of an accepted group.

The limit: a change that acts only after the canary's epochs (a schedule's late step, say) is
caught only by ``--full``. A change of settings (params.yaml, conf/), of the prepared data, of
torch or of the device kind is never accepted: it is not a code change.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from .collection.currency import changes, read_metas, run_overrides
from .errors import ConfigError, exit_on_config_error
from .files import git_commit
from .identity import changed_measures, config_hash, identity
from .measures import fingerprints
from .runs import CONFIG, KEY_COLUMNS, METRICS, PREDICTIONS, read_done, write_done
from .study import load_study

NOT_SETTINGS = ("training_code", "torch", "device_kind")  # what a code change may change in an identity


@dataclass
class Stale:
    """A complete run whose hash is not today's, and why."""

    directory: Path
    done: dict
    expected_hash: str
    reason: str | None  # None: only the code differs (a canary can accept it)


@dataclass
class Group:
    """The stale runs of one (dataset, model, axis values): one canary decides them all."""

    key: str
    overrides: list[str]
    runs: list[Stale] = field(default_factory=list)


def stale_groups(runs_root: Path, prepared_root: Path, params_file: str = "params.yaml") -> list[Group]:
    """The study's complete runs that are not current, grouped; each with why (``Stale.reason``)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from .project import project_root

    study = load_study(params_file)
    params = yaml.safe_load(Path(params_file).read_text())
    metas = read_metas(study, prepared_root)
    groups: dict[str, Group] = {}
    with initialize_config_dir(
        version_base="1.3", config_dir=str(project_root() / "conf"), job_name="accept"
    ):
        for variant, model, seed, overrides in run_overrides(study, params):
            relative = study.run_dir(Path(), variant.dataset, model, variant.values, seed)
            done = read_done(runs_root / relative)
            if done is None:
                continue  # never trained: the train stage's
            meta = metas[variant.prepared(prepared_root)]
            expected = identity(compose(config_name="train", overrides=overrides), meta)
            expected_hash = config_hash(expected)
            if done.get("config_hash") == expected_hash and not changed_measures(done):
                continue  # current
            recorded = identity(OmegaConf.load(runs_root / relative / CONFIG), meta)
            differ = changes(
                {k: v for k, v in recorded.items() if k not in NOT_SETTINGS}
                | {
                    "torch": done.get("torch"),
                    "device_kind": done.get("device_kind"),
                    "data": done.get("data_version"),
                },
                {k: v for k, v in expected.items() if k not in NOT_SETTINGS}
                | {
                    "torch": expected["torch"],
                    "device_kind": expected["device_kind"],
                    "data": meta["data_version"],
                },
            )
            reason = f"not a code change ({'; '.join(differ[:3])})" if differ else None
            key = relative.parent.as_posix()
            group = groups.setdefault(key, Group(key, [o for o in overrides if not o.startswith("seed=")]))
            group.runs.append(Stale(runs_root / relative, done, expected_hash, reason))
    return list(groups.values())


def train_canary(group: Group, canary: Stale, epochs: int, scratch: Path) -> Path:
    """Train the group's canary seed for ``epochs`` with today's code, as the train stage would, in
    ``scratch`` (its own MLflow store there too); its run directory."""
    run_dir = scratch / group.key.replace("/", "__").replace("=", "-") / f"seed-{canary.done['seed']}"
    command = [
        sys.executable,
        "-m",
        "overfitlab.train",
        *group.overrides,
        f"seed={canary.done['seed']}",
        f"train.epochs={epochs}",
        f"paths.run_dir={run_dir}",
        f"mlflow.tracking_uri=sqlite:///{scratch / 'mlflow.db'}",
        "trainer.progress_bar=false",
        "trainer.checkpoint=false",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or read_done(run_dir) is None:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if "HYDRA_FULL_ERROR" not in line]
        raise ConfigError(f"the canary of {group.key} did not train: {(lines or ['no output'])[-1].strip()}")
    return run_dir


def differences(stored: Path, canary: Path, epochs: int, full: bool) -> tuple[list[str], list[str]]:
    """(what differs, what was compared) between a stored run and its canary over ``epochs``: the
    stored run's metric columns as written (the same float formatting: bit-identical means equal
    text), its weights' digests where it recorded them and, with ``full``, its test predictions."""
    old = pd.read_csv(stored / METRICS, dtype=str, keep_default_na=False).head(epochs)
    new = pd.read_csv(canary / METRICS, dtype=str, keep_default_na=False).head(epochs)
    columns = [c for c in old.columns if c not in KEY_COLUMNS]
    found = [] if len(old) == len(new) else [f"epochs: {len(old)} stored, {len(new)} in the canary"]
    for column in columns:
        if column not in new:
            found.append(f"{column}: not measured by the canary")
            continue
        for epoch, (a, b) in enumerate(zip(old[column], new[column]), start=1):
            if a != b:
                found.append(f"{column} epoch {epoch}: {a} stored, {b} now")
                break
    compared = [f"{len(columns)} metric columns"]
    digests = (read_done(stored) or {}).get("weights_digests")
    if digests:
        compared.append("weights digests")
        if digests[:epochs] != (read_done(canary) or {}).get("weights_digests", [])[:epochs]:
            found.append("the weights' digests differ")
    if full and (stored / PREDICTIONS).exists():
        compared.append(PREDICTIONS)
        if not np.array_equal(np.load(stored / PREDICTIONS), np.load(canary / PREDICTIONS), equal_nan=True):
            found.append(f"{PREDICTIONS} differs")
    return found, compared


def stamp(run: Stale, canary: dict) -> None:
    """Re-stamp an accepted run with today's hash and measures, the canary recorded."""
    done = run.done
    measured = done.get("measures") or {
        name: None for name in fingerprints() if name != "weights_digest" or "weights_digests" in done
    }
    now = fingerprints()
    record = {"from_config_hash": done.get("config_hash"), "to_config_hash": run.expected_hash, **canary}
    write_done(
        run.directory,
        done
        | {
            "config_hash": run.expected_hash,
            "measures": {name: now[name] for name in measured if name in now},
            "accepted": [*done.get("accepted", []), record],
        },
    )


def accept(epochs: int = 2, full: bool = False, dry_run: bool = False, runs_root: str = "runs") -> int:
    """Accept what a canary shows unchanged; the number of runs refused (they will retrain)."""
    groups = stale_groups(Path(runs_root), Path("data/prepared"))
    if not groups:
        print("every complete run of the study is current: nothing to accept", file=sys.stderr)
        return 0
    accepted = refused = 0
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="overfitlab-canary-") as scratch:
        for group in groups:
            candidates = [r for r in group.runs if r.reason is None]
            for run in group.runs:
                if run.reason is not None:
                    refused += 1
                    print(f"✗ {run.directory}: {run.reason}: retrain it (dvc repro)", file=sys.stderr)
            if not candidates:
                continue
            canary = min(candidates, key=lambda r: r.done["seed"])
            length = canary.done["epochs"] if full else min(epochs, canary.done["epochs"])
            if dry_run:
                print(
                    f"? {group.key}: {len(candidates)} run(s) differ only in code; a canary would "
                    f"retrain seed={canary.done['seed']} for {length} epoch(s)",
                    file=sys.stderr,
                )
                continue
            trained = train_canary(group, canary, length, Path(scratch))
            found, compared = differences(canary.directory, trained, length, full)
            if found:
                refused += len(candidates)
                print(
                    f"✗ {group.key}: the canary (seed={canary.done['seed']}, {length} epoch(s)) differs: "
                    f"{'; '.join(found[:4])}: {len(candidates)} run(s) not accepted",
                    file=sys.stderr,
                )
                continue
            record = {
                "canary": f"seed={canary.done['seed']}",
                "epochs": length,
                "full": full,
                "compared": compared,
                "git_commit": commit,
                "torch": torch.__version__,
                "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            for run in candidates:
                stamp(run, record)
            accepted += len(candidates)
            print(
                f"✓ {group.key}: the canary (seed={canary.done['seed']}, {length} epoch(s)) matches "
                f"({', '.join(compared)} bit-identical): {len(candidates)} run(s) accepted",
                file=sys.stderr,
            )
    if not dry_run:
        print(
            f"{accepted} run(s) accepted, {refused} not: `dvc repro` retrains only those not accepted",
            file=sys.stderr,
        )
    return refused


@exit_on_config_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m overfitlab.accept", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="canary length in epochs (default 2)")
    parser.add_argument("--full", action="store_true", help="the canary trains the whole run")
    parser.add_argument("--dry-run", action="store_true", help="list the stale runs and why; train nothing")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: the canary needs at least 1 epoch")
    sys.exit(1 if accept(args.epochs, args.full, args.dry_run) else 0)


if __name__ == "__main__":
    main()
