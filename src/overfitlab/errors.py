"""Bad input stops a stage with one line naming the key or file and what to do."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class ConfigError(Exception):
    """A user-facing problem with a config value, a file or the dataset: one line, exit code 2."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def exit_on_config_error(func: F) -> F:
    """Turn a ConfigError into ``error: <message>`` on stderr and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
