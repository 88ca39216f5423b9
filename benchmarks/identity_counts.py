"""How many runs of each committed study a change would retrain: the runs whose config hash differs
between two copies of the project (``A`` and ``B``: each a directory with ``src/``, ``conf/`` and
``studies/``), computed from the studies' params.yaml and conf/ as the train stage composes them.

    python benchmarks/identity_counts.py A B            # per study: runs, and how many hashes differ
    python benchmarks/identity_counts.py A B --axis train.batch_size=64
        # B's studies each gain that axis, with their current value too: how many of A's runs keep
        # their hash (they are then moved, not retrained: identity.reuse); B's params.yaml files are
        # rewritten, so pass a copy
    python benchmarks/identity_counts.py A B --settings-only
        # the code hash left out: the runs whose settings B defines differently (which no canary
        # can accept), e.g. A from before a new option and B with it at its declared default

The prepared data's version is the same placeholder on both sides (a code or option change does not
touch the data); torch and the device kind are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

LIST = r"""
import itertools, json, sys, yaml
from pathlib import Path
from overfitlab.axes import override_value
from omegaconf import OmegaConf
from hydra import compose, initialize_config_dir
from overfitlab.project import project_root
try:
    from overfitlab.identity import config_hash, identity
except ImportError:  # a tree from before identity.py (2026-12-07)
    from overfitlab.runs import config_hash, identity
from overfitlab.study import load_study

axis, settings_only = sys.argv[1], sys.argv[2] == "1"
params = yaml.safe_load(Path("params.yaml").read_text())
if axis:
    key, value = axis.split("=")
    base = OmegaConf.select(OmegaConf.create(params), key)
    params["study"].setdefault("axes", {})
    params["study"]["axes"] = (params["study"]["axes"] or {}) | {key: [base, yaml.safe_load(value)]}
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
study = load_study("params.yaml")
hashes = {}
train = params.get("train") or {}
optimizer = [f"optimizer={train['optimizer']}"] if "optimizer" in train else []
with initialize_config_dir(version_base="1.3", config_dir=str(project_root() / "conf"), job_name="count"):
    for variant in [dict(zip(study.axes, v)) for v in itertools.product(*study.axes.values())] or [{}]:
        for dataset, model, seed in itertools.product(study.datasets, study.models, study.seeds):
            values = [f"{k}={override_value(v)}" for k, v in variant.items()]
            fixed = [f"dataset={dataset}", f"model={model}", f"seed={seed}"]
            cfg = compose(config_name="train", overrides=[*fixed, *values, *optimizer])
            found = identity(cfg, {"data_version": "placeholder"})
            if settings_only:
                found.pop("training_code")
            hashes[study.run_dir(Path(), dataset, model, variant, seed).as_posix()] = config_hash(found)
print(json.dumps(hashes))
"""


def study_dirs(root: Path) -> list[Path]:
    return [Path(".")] + sorted(p.parent.relative_to(root) for p in root.glob("studies/**/params.yaml"))


def hashes(root: Path, study: Path, axis: str = "", settings_only: bool = False) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    command = [sys.executable, "-c", LIST, axis, "1" if settings_only else "0"]
    result = subprocess.run(command, cwd=root / study, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{root / study}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--axis", default="", help="key=value: B's studies gain this axis value")
    parser.add_argument(
        "--settings-only",
        action="store_true",
        help="leave the code hash out: the runs a change of settings retrains (a code change is for accept)",
    )
    args = parser.parse_args()
    total = changed = 0
    for study in study_dirs(args.a):
        before = hashes(args.a, study, settings_only=args.settings_only)
        after = hashes(args.b, study, args.axis, args.settings_only)
        if args.axis:  # A's runs whose hash B's study no longer has anywhere
            lost = len(set(before.values()) - set(after.values()))
        else:
            lost = sum(before[run] != after.get(run) for run in before)
        total, changed = total + len(before), changed + lost
        print(f"{str(study):45s} {len(before):4d} runs, {lost:4d} retrain")
    print(f"{'all studies':45s} {total:4d} runs, {changed:4d} retrain")


if __name__ == "__main__":
    main()
