"""What the report reads: collect's outputs (``reports_layout``), read once into ``ReportInputs``,
plus what figures derive from them (computed on first use)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from .. import reports_layout
from ..data import layout
from ..errors import require
from ..runs import extra_test_sets
from . import tables


def read(path: Path):
    """One of collect's outputs as its kind says: a table (.parquet, .csv), JSON, else the path."""
    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".json": lambda p: json.loads(p.read_text())}
    return readers.get(path.suffix, lambda p: p)(path)


@dataclass(eq=False)  # DataFrames do not compare to a bool
class ReportInputs:
    """collect's outputs, read once, plus what figures derive from them (computed on first use)."""

    epochs: pd.DataFrame
    runs: pd.DataFrame
    predictions: pd.DataFrame
    counts: pd.DataFrame
    feature_maps: pd.DataFrame  # dataset, model, seed, path: whose conv feature maps each file holds
    prepared_root: Path
    diverged: pd.DataFrame  # runs whose loss became NaN/inf: listed, left out of every statistic
    axes: dict = field(default_factory=dict)  # the study's axes: column in runs.csv -> config key
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x training example (examples.py)
    example_consistency: pd.DataFrame = field(default_factory=pd.DataFrame)  # model x example, over seeds
    files: dict = field(default_factory=dict)  # every report input by its name in reports_layout

    @classmethod
    def load(cls, metrics_dir: Path, prepared_root: Path) -> ReportInputs:
        """Every file of ``reports_layout.REPORT_INPUTS`` in ``metrics_dir``, read by its kind; a
        figure reads one that has no field here as ``inputs.files[reports_layout.NAME]``."""
        files = {}
        for name in reports_layout.REPORT_INPUTS:
            path = metrics_dir / name
            require(path.exists(), f"{path} not found: run the collect stage first")
            files[name] = read(path)
        maps = files[reports_layout.FEATURE_MAPS_INDEX].copy()
        maps["path"] = [files[reports_layout.FEATURE_MAPS] / name for name in maps.pop("file")]
        runs = files[reports_layout.RUNS]
        complete = (
            runs["status"].fillna("complete") == "complete" if "status" in runs else runs["seed"].notna()
        )
        return cls(
            epochs=files[reports_layout.EPOCHS],
            runs=runs[complete].reset_index(drop=True),
            diverged=runs[~complete].reset_index(drop=True),
            predictions=files[reports_layout.PREDICTIONS],
            counts=files[reports_layout.CLASS_COUNTS],
            feature_maps=maps,
            prepared_root=prepared_root,
            axes=files[reports_layout.AXES],
            examples=files[reports_layout.EXAMPLES],
            example_consistency=files[reports_layout.EXAMPLE_CONSISTENCY],
            files=files,
        )

    @cached_property
    def extra_test_sets(self) -> list[str]:
        """Extra test sets of image-folder datasets (``test_acc/<name>`` columns)."""
        return extra_test_sets(self.epochs.columns)

    @cached_property
    def class_order(self) -> dict[str, list[str]]:
        return tables.class_order(self.counts, self.predictions)

    @cached_property
    def n_test(self) -> dict[str, int]:
        """Test examples per dataset (variant): the finite evaluation behind each accuracy."""
        test = self.counts[self.counts["split"] == "test"]
        return test.groupby("dataset")["count"].sum().astype(int).to_dict()

    @cached_property
    def n_classes(self) -> dict[str, int]:
        return self.counts.groupby("dataset")["class"].nunique().to_dict()

    @cached_property
    def prepared_dirs(self) -> dict[str, Path]:
        """The prepared data directory of each dataset (variant) of the tables (runs.csv's ``prepared``)."""
        runs = pd.concat([self.runs, self.diverged], ignore_index=True)
        if "prepared" not in runs:
            return {}
        return {d: Path(p) for d, p in runs.drop_duplicates("dataset")[["dataset", "prepared"]].values}

    def prepared(self, dataset: str) -> Path:
        """The prepared data directory of a dataset (variant) of the tables."""
        return self.prepared_dirs.get(dataset, self.prepared_root / dataset)

    @cached_property
    def image_folders(self) -> dict[str, dict]:
        """meta.json of each image-folder dataset of the study (skipped files, leakage check, ...)."""
        metas = {}
        for dataset in dict.fromkeys(self.counts["dataset"]):
            meta_file = layout.meta_file(self.prepared(dataset))
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            if meta.get("loader") == "image_folder":
                metas[dataset] = meta
        return metas

    @property
    def varying_axes(self) -> list[str]:
        """The study's axes (their runs.csv columns) with more than one value."""
        return [c for c in self.axes if c in self.runs and self.runs[c].nunique(dropna=False) > 1]
