"""How many runs of each committed study a change would retrain: the runs whose config hash differs
between two copies of the project (``A`` and ``B``: each a directory with ``src/``, ``conf/`` and
``studies/``), computed from the studies' params.yaml and conf/ as the train stage composes them.

    python benchmarks/identity_counts.py A B            # per study: runs, and how many hashes differ
    python benchmarks/identity_counts.py A B --axis train.batch_size=64
        # B's studies each gain that axis, with their current value too: how many of A's runs keep
        # their hash (they are then moved, not retrained: identity.reuse)

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
import json, sys, yaml
from pathlib import Path
from omegaconf import OmegaConf
from hydra import compose, initialize_config_dir
from overfitlab.collect import run_overrides
from overfitlab.identity import config_hash, identity
from overfitlab.project import project_root
from overfitlab.study import load_study

axis = sys.argv[1] if len(sys.argv) > 1 else ""
params = yaml.safe_load(Path("params.yaml").read_text())
if axis:
    key, value = axis.split("=")
    base = OmegaConf.select(OmegaConf.create(params), key)
    params["study"].setdefault("axes", {})
    params["study"]["axes"] = (params["study"]["axes"] or {}) | {key: [base, yaml.safe_load(value)]}
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
study = load_study("params.yaml")
hashes = {}
with initialize_config_dir(version_base="1.3", config_dir=str(project_root() / "conf"), job_name="count"):
    for variant, model, seed, overrides in run_overrides(study, params):
        cfg = compose(config_name="train", overrides=overrides)
        run = study.run_dir(Path(), variant.dataset, model, variant.values, seed).as_posix()
        hashes[run] = config_hash(identity(cfg, {"data_version": "placeholder"}))
print(json.dumps(hashes))
"""


def study_dirs(root: Path) -> list[Path]:
    return [Path(".")] + sorted(p.parent.relative_to(root) for p in root.glob("studies/**/params.yaml"))


def hashes(root: Path, study: Path, axis: str = "") -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    result = subprocess.run(
        [sys.executable, "-c", LIST, axis], cwd=root / study, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{root / study}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--axis", default="", help="key=value: B's studies gain this axis value")
    args = parser.parse_args()
    total = changed = 0
    for study in study_dirs(args.a):
        before, after = hashes(args.a, study), hashes(args.b, study, args.axis)
        if args.axis:  # A's runs whose hash B's study no longer has anywhere
            lost = len(set(before.values()) - set(after.values()))
        else:
            lost = sum(before[run] != after.get(run) for run in before)
        total, changed = total + len(before), changed + lost
        print(f"{str(study):45s} {len(before):4d} runs, {lost:4d} retrain")
    print(f"{'all studies':45s} {total:4d} runs, {changed:4d} retrain")


if __name__ == "__main__":
    main()
