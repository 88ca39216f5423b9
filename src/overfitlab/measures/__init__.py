"""Measurement: what a run records about its training, never what decides its weights.

Each measure is its own module (a class with the hooks ``meter.py`` describes) with its own
fingerprint (``fingerprints``), recorded in each run's ``done.json``. Measures are outside a run's
code hash (``identity.numerics_code``), so:

* adding a measure retrains nothing: runs trained before it have no record of it, their column is
  empty, and collect says which runs lack it;
* changing a measure's code changes its fingerprint: runs that recorded it with the old code are
  no longer current (retrained by the next ``dvc repro``, or accepted with a canary by
  ``python -m overfitlab.accept``), never kept with old values silently.

A measure must not draw random numbers or change the weights: a canary's weights digests
(``weights_digest``) would show it.
"""

from __future__ import annotations

from functools import cache

from .calibration import Calibration
from .label_noise import LabelNoise
from .loss_accuracy import LossAccuracy
from .penalty import Penalty
from .per_example import PerExample
from .test_predictions import TestPredictions
from .weights_digest import WeightsDigest

# Every measure a run records, by name (its key in done.json's ``measures``).
MEASURES = {
    "loss_accuracy": LossAccuracy,
    "label_noise": LabelNoise,
    "calibration": Calibration,
    "per_example": PerExample,
    "test_predictions": TestPredictions,
    "weights_digest": WeightsDigest,
    "penalty": Penalty,
}
SHARED = ("meter", "sums")  # the machinery every measure runs through: in every fingerprint


@cache
def fingerprints() -> dict[str, str]:
    """Each measure's fingerprint: the code of its module, of what it imports and of the shared
    machinery (``SHARED``), without package ``__init__`` files (this registry): a new measure
    leaves the others' fingerprints alone."""
    from ..fingerprint import files_digest
    from ..imports import PACKAGE, imported_modules, module_file

    out = {}
    for name, kind in MEASURES.items():
        files: set = set()
        todo = [module_file(m) for m in (kind.__module__, *(f"{__name__}.{s}" for s in SHARED))]
        while todo:
            path = todo.pop()
            if path in files or path.name == "__init__.py":
                continue
            files.add(path)
            todo += [module_file(m) for m in imported_modules(path)]
        out[name] = files_digest(sorted(files), PACKAGE)
    return out
