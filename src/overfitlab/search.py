"""Hyper-parameter search: each Hydra (Optuna) trial is one training run, scored on validation.

    python -m overfitlab.search --multirun               # conf/search/mlp.yaml: space and trial count
    python -m overfitlab.search --multirun +search=<name>  # another space in conf/search/

A trial's score is its best validation accuracy (early stopping on it, ``trainer.early_stopping``);
the test metrics are logged like in any run but never select anything. The best trial is printed
and written to ``search.best_file`` (reports/search/best.yaml).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import exit_on_config_error
from .files import atomic_write_text
from .project import conf_dir
from .study import preflight
from .train import train


@exit_on_config_error
def trial(cfg: DictConfig) -> float:
    """Train one configuration (or reuse its finished run) and return its best validation score."""
    train(cfg)
    history = pd.read_csv(Path(cfg.paths.run_dir) / "metrics.csv")
    monitor = cfg.trainer.early_stopping.monitor
    return float(
        history[monitor].max() if cfg.trainer.early_stopping.mode == "max" else history[monitor].min()
    )


class BestTrial(Callback):
    """Collects every trial's score and writes the best one (overrides, score, run dir) at the end."""

    def __init__(self) -> None:
        self.trials: list[dict] = []

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        value = getattr(job_return, "_return_value", None)
        if isinstance(value, float):
            self.trials.append(
                {"score": value, "overrides": list(job_return.overrides), "run_dir": config.paths.run_dir}
            )

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.trials:
            print("search: no trial finished", file=sys.stderr)
            return
        sign = 1 if config.hydra.sweeper.direction == "maximize" else -1
        best = max(self.trials, key=lambda t: sign * t["score"])
        ranked = sorted(self.trials, key=lambda t: -sign * t["score"])
        result = {
            "monitor": config.trainer.early_stopping.monitor,
            "direction": config.hydra.sweeper.direction,
            "best": best,
            "trials": ranked,
        }
        # A JSON round trip gives plain copies, so the YAML has no anchors (&id001) for shared lists.
        atomic_write_text(
            Path(config.search.best_file), yaml.safe_dump(json.loads(json.dumps(result)), sort_keys=False)
        )
        print(
            f"search: best {result['monitor']} {best['score']:.4f} of {len(self.trials)} trials with "
            f"{' '.join(best['overrides'])} -> {config.search.best_file}",
            file=sys.stderr,
        )


DEFAULT_SPACE = "+search=mlp"


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float:
    return trial(cfg)


if __name__ == "__main__":
    if not any(arg.startswith(("+search=", "search=")) for arg in sys.argv[1:]):
        sys.argv.append(DEFAULT_SPACE)  # a search space is a config of conf/search/
    preflight(sys.argv[1:], command_line_axes=False)  # with the space: search.* keys compose
    main()
