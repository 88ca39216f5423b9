"""overfitlab: reproducible overfitting studies of image classifiers."""

import sys

from omegaconf import OmegaConf

__version__ = "0.1.0"


def _sweep_list(values, key: str = "study.seeds", default=None) -> str:
    """Render a list from params.yaml as a Hydra sweep (``0,1,2``); an empty list is an error.

    A missing list (None) sweeps the single ``default`` value. Hydra resolves this while
    building its sweeper, where an exception becomes a long traceback; the user gets the
    one-line error and exit status 2 instead.
    """
    items = list(values) if values is not None else ([] if default is None else [default])
    if not items:
        print(
            f"error: {key} is empty (params.yaml); list at least one value, e.g. {key}: [0, 1, 2]",
            file=sys.stderr,
        )
        sys.exit(2)
    return ",".join(str(v) for v in items)


# Registered at import so every entry point (and the tests' compose calls) can resolve conf/.
def _control_tag(label_noise, pixels) -> str:
    from .data.controls import control_tag

    return control_tag(label_noise, pixels)


def _run_dir(runs_root, data_label, model, seed) -> str:
    from .runs import run_dir

    return str(run_dir(runs_root, data_label, model, seed))


def _project_root() -> str:
    """The project's root (``conf/``, ``.venv/``) from the project or a study directory: launcher presets."""
    from .study import project_root

    return str(project_root())


def _repeat(value, times) -> list:
    """``[value] * times``: e.g. a searched number of hidden layers of one searched width."""
    return [value] * int(times)


if not OmegaConf.has_resolver("sweep"):
    OmegaConf.register_new_resolver("sweep", _sweep_list)
    OmegaConf.register_new_resolver("control_tag", _control_tag)
    OmegaConf.register_new_resolver("repeat", _repeat)
    OmegaConf.register_new_resolver("run_dir", _run_dir)
    OmegaConf.register_new_resolver("project_root", _project_root)
