"""A run's identity: what its numbers depend on, and nothing else (the hash that keys its done.json).

The identity is the resolved run config's dataset, controls, model, optimizer and trainer settings,
the seed, the prepared data's version, the torch version, the device kind and the hash of the code
on the run's path (``code_hash``). Three rules keep it to what defines the numbers:

* **Declared defaults.** A setting at its declared default (``DECLARED_DEFAULTS``, or ``null``) is
  left out: an option added with the value that reproduces the behaviour before it leaves every
  existing run's identity, and so its hash, unchanged.
* **Code per part.** The code hash covers the always-on core (the import closure of ``NUMERICS``)
  and the closure of every part the run's config instantiates from this package (a ``_target_``:
  its model family, and any optional loss, regularizer, augmentation, schedule or recorder): a new
  part, or an edit of one, changes only the runs that use it.
* **Measurement is not trajectory.** What only measures (``overfitlab.measures``) is outside the
  code hash; each measure has its own fingerprint, recorded per run (``measures.fingerprints``).

Speed-only settings (``axes.SPEED_ONLY_TRAINER_KEYS``) are outside it too. A stored run is current
when its hash is today's and every measure it recorded has today's fingerprint (``is_current``); a
current run found elsewhere in the study is moved where the study now expects it (``reuse``).
Orchestration (the Hydra entry point, tracking, console output, collect, report, this module) is
never hashed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .axes import SPEED_ONLY_TRAINER_KEYS
from .files import sha256_json
from .fingerprint import files_digest
from .imports import closure
from .runs import DONE, read_done, write_done

PACKAGE = Path(__file__).resolve().parent

# The entry points of the numerics: what turns a prepared dataset, a config and a seed into a run's
# numbers. Their import closure, plus the parts a run's config names, is the code a run's hash covers.
NUMERICS = ("overfitlab.data.datasets", "overfitlab.data.controls", "overfitlab.training.fitting")
# Imported by the numerics but only measuring: left out of the code hash (fingerprinted per measure).
MEASUREMENT = ("overfitlab.measures",)

# Options added after runs were trained, each with the value that reproduces the behaviour before it
# (dotted keys of the identity, e.g. "optimizer.weight_decay": 0.0). A run at that value keeps the
# identity it had before the option existed. An option every run's identity has carried since before
# this rule is not listed: listing it would change their hashes.
DECLARED_DEFAULTS: dict[str, object] = {}


def part_modules(config) -> list[str]:
    """The package's modules a config instantiates: every ``_target_`` inside ``overfitlab``
    (``overfitlab.training.models.mlp.MLP`` -> ``overfitlab.training.models.mlp``), sorted."""
    found = set()
    if isinstance(config, dict):
        target = config.get("_target_")
        if isinstance(target, str) and target.startswith("overfitlab."):
            found.add(target.rsplit(".", 1)[0])
        for value in config.values():
            found |= set(part_modules(value))
    elif isinstance(config, list):
        for value in config:
            found |= set(part_modules(value))
    return sorted(found)


def numerics_code(parts=(), src: Path = PACKAGE.parent) -> list[Path]:
    """The files a run's numbers depend on: the closure of ``NUMERICS`` and of the run's ``parts``
    (modules), measurement left out (``src``: the directory holding the package; a copy in the tests)."""
    return closure([*NUMERICS, *parts], src, outside=MEASUREMENT)


@cache
def code_hash(parts: tuple = (), src: Path = PACKAGE.parent) -> str:
    """One hash over ``numerics_code``: each file's path (relative to the package) and code."""
    return files_digest(numerics_code(parts, src), Path(src) / "overfitlab")


def config_hash(identity: dict) -> str:
    return sha256_json(identity)[:12]


def device_kind(accelerator: str) -> str:
    """``cuda`` or ``cpu``: where a run with this ``trainer.accelerator`` trains on this machine."""
    import torch

    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def without_defaults(value, defaults: dict | None = None, prefix: str = ""):
    """``value`` with every ``None`` entry of its mappings, and every key at its declared default,
    dropped, recursively. Declared: ``defaults`` (dotted key -> value; ``DECLARED_DEFAULTS``) and,
    for a part instantiated from this package, its class's ``DECLARED_DEFAULTS``; a part left with
    nothing but its ``_target_`` is off and leaves too, as does a mapping emptied that way."""
    defaults = DECLARED_DEFAULTS if defaults is None else defaults
    if isinstance(value, list):
        return [without_defaults(v, defaults, prefix) for v in value]
    if not isinstance(value, dict):
        return value
    own = part_defaults(value)
    kept = {}
    for key, item in value.items():
        dotted = f"{prefix}{key}"
        declared = own if key in own else defaults
        name = key if key in own else dotted
        if item is None or (name in declared and _same(item, declared[name])):
            continue
        pruned = without_defaults(item, defaults, f"{dotted}.")
        if isinstance(item, dict) and item and not pruned:
            continue  # emptied by declared defaults: an optional part that is off
        kept[key] = pruned
    return {} if own and set(kept) <= {"_target_"} else kept


def part_defaults(node: dict) -> dict:
    """The ``DECLARED_DEFAULTS`` of the class a config node instantiates from this package ({} for
    none): the settings at which an optional part of training is off (training/parts/)."""
    target = node.get("_target_")
    if not (isinstance(target, str) and target.startswith("overfitlab.")):
        return {}
    from hydra.utils import get_class

    return dict(getattr(get_class(target), "DECLARED_DEFAULTS", {}))


def _same(value, default) -> bool:
    """Equal and of the same kind (0 and 0.0 are one value; ``False`` and 0 are not)."""
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def identity(cfg, meta: dict) -> dict:
    """What defines a run's numbers (see the module docstring)."""
    import torch
    from omegaconf import OmegaConf

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in SPEED_ONLY_TRAINER_KEYS:
        trainer.pop(key, None)
    settings = {
        "dataset": cfg.dataset.name,
        "data_version": meta["data_version"],
        "control": OmegaConf.to_container(cfg.control, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "trainer": trainer,
        "seed": int(cfg.seed),
    }
    settings = without_defaults(settings)
    return settings | {
        "training_code": code_hash(tuple(part_modules(settings))),
        "torch": torch.__version__,
        "device_kind": device_kind(str(cfg.trainer.accelerator)),
    }


def changed_measures(done: dict) -> list[str]:
    """The measures a run recorded with other code than today's (``measures.fingerprints``): its
    values of them are stale. A measure it has no record of (added since) is not among them."""
    from .measures import fingerprints

    now = fingerprints()
    return sorted(n for n, fp in (done.get("measures") or {}).items() if n in now and now[n] != fp)


def is_current(directory: str | Path, expected_hash: str | None = None) -> bool:
    """Complete (``done.json``) and, given ``expected_hash``, current: that hash, today's measures."""
    done = read_done(directory)
    if done is None or expected_hash is None:
        return done is not None
    return done.get("config_hash") == expected_hash and not changed_measures(done)


def reuse(runs_root: Path, directory: Path, expected_hash: str, axis_values: dict) -> Path | None:
    """Move a current run of ``expected_hash`` found elsewhere under ``runs_root`` (the study gained
    an axis or a value, or its layout changed) to ``directory``, where the study now expects it; its
    done.json records where it came from (``moved_from``). The run it came from, or None."""
    import os
    import shutil

    for marker in Path(runs_root).glob(f"**/{DONE}"):
        found = marker.parent
        if found == Path(directory) or not is_current(found, expected_hash):
            continue
        shutil.rmtree(directory, ignore_errors=True)  # a half-written or stale run of this place
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
        os.replace(found, directory)
        done = read_done(directory)
        moves = [*done.get("moved_from", []), found.relative_to(runs_root).as_posix()]
        write_done(directory, done | {"axes": axis_values, "moved_from": moves})
        return found
    return None


@dataclass
class Run:
    """One run of the current config: its axis values, directory and the hash that keys it."""

    cfg: object  # the composed run config (DictConfig)
    identity: dict
    run_dir: Path
    axis_values: dict = field(default_factory=dict)

    @classmethod
    def of(cls, cfg, meta: dict) -> Run:
        """The run of a composed run config (``conf/train.yaml``) on the prepared data of ``meta``."""
        from .axes import run_values

        return cls(cfg, identity(cfg, meta), Path(cfg.paths.run_dir), run_values(cfg))

    @property
    def key(self) -> str:
        """``<dataset>/<model>/<axis>=<value>...``: the run without its seed."""
        from .axes import dir_parts

        return "/".join([self.cfg.dataset.name, self.cfg.model.name, *dir_parts(self.axis_values)])

    @property
    def label(self) -> str:
        """``fashion_mnist mlp lr=0.1 seed=0``: the run in console lines and failure lists."""
        from .axes import label

        parts = [self.cfg.dataset.name, self.cfg.model.name, label(self.axis_values), f"seed={self.cfg.seed}"]
        return " ".join(p for p in parts if p)

    @property
    def config_hash(self) -> str:
        return config_hash(self.identity)

    def complete(self) -> bool:
        return is_current(self.run_dir, self.config_hash)

    def reuse(self) -> Path | None:
        """``reuse`` for this run, from the study's runs root (``paths.runs``): where it came from."""
        from omegaconf import OmegaConf

        root = Path(OmegaConf.select(self.cfg, "paths.runs", default="runs")).resolve()
        if not self.run_dir.resolve().is_relative_to(root):
            return None  # a run directory of its own (paths.run_dir): nothing of the study's is moved
        return reuse(root, self.run_dir.resolve(), self.config_hash, self.axis_values)
