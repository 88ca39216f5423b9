"""Where the project is: the directory holding ``conf/train.yaml``, found from the project root or a
study directory (``studies/<name>/``), whose stages share the project's ``conf/`` and MLflow store."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def project_root(start: str | Path | None = None) -> Path:
    """The directory holding ``conf/train.yaml``: the working directory or one above it.

    A study is a directory with its own ``params.yaml`` and ``dvc.yaml`` (the project root is the
    default study, ``studies/<name>/`` are others); its stages run there and share the project's
    ``conf/`` library and MLflow store.
    """
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "conf" / "train.yaml").is_file():
            return directory
    raise ConfigError(
        f"conf/train.yaml not found in {here} or above: run from the project root "
        "or a study directory (studies/<name>/)"
    )


def conf_dir() -> str:
    """conf/ of the project, for ``hydra.main``; falls back to ./conf so Hydra names the problem."""
    try:
        return str(project_root() / "conf")
    except ConfigError:
        return str(Path.cwd() / "conf")
