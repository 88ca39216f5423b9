"""The shared config validators (overfitlab.checks) and the one CPU-count helper (overfitlab.machine)."""

import os
import sys

import pytest
from omegaconf import OmegaConf

from conftest import image_folder_overrides, messy_folder, run_cli
from overfitlab import checks, machine
from overfitlab.data.image_folder.options import worker_count
from overfitlab.errors import ConfigError


def test_integers_are_never_bools_and_errors_name_the_key():
    assert checks.is_int(3) and not checks.is_int(True) and not checks.is_int(3.0)
    assert checks.is_number(2.5) and not checks.is_number(False) and not checks.is_number("2")
    assert checks.positive_int(4, "dataset.tiles.size") == 4
    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ConfigError, match=r"^dataset\.tiles\.size=.* must be a positive integer$"):
            checks.positive_int(bad, "dataset.tiles.size")
    assert checks.int_value(0, "seed", low=0) == 0
    with pytest.raises(ConfigError, match="must be a non-negative integer"):
        checks.int_value(-1, "seed", low=0)
    with pytest.raises(ConfigError, match="k=9 must be an integer from 1 to 5"):
        checks.int_value(9, "k", 1, 5)
    with pytest.raises(ConfigError, match="k=9 must be one of the 5 images"):
        checks.int_value(9, "k", 1, 5, what="one of the 5 images")


def test_number_lists_accept_yaml_and_omegaconf_lists_only():
    assert checks.number_list(OmegaConf.create([1, 2.5]), "a", 2) == [1, 2.5]
    assert checks.number_list((0,), "a") == [0]
    for bad in ("12", [1, True], [1, "2"], [1, 2, 3], 5):
        with pytest.raises(ConfigError, match="a=.* must be a list of 2 numbers"):
            checks.number_list(bad, "a", 2)
    assert checks.fraction(1, "p") == 1.0
    with pytest.raises(ConfigError, match="p=True must be a fraction from 0 to 1"):
        checks.fraction(True, "p")
    with pytest.raises(ConfigError, match=r"x='c'; allowed: \['a', 'b'\]"):
        checks.choice("c", "x", ("a", "b"))


def test_cpu_count_is_the_cores_this_process_may_use(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})
        assert machine.cpu_count() == 2
    else:
        assert machine.cpu_count() == (os.cpu_count() or 1)
    assert worker_count(None) == machine.cpu_count() and worker_count(3) == 3


def _error_line(*args) -> str:
    result = run_cli(sys.executable, "-m", "overfitlab.prepare", *args, "out_dir=failed")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stdout + result.stderr
    return lines[0]


@pytest.mark.slow
def test_bool_seeds_and_float_caps_are_errors_for_both_loaders(project, tmp_path):
    # A YAML `true` was an integer seed (1) and a float cap above the tile count passed unchecked.
    assert "prepare.split_seed=True must be an integer" in _error_line("prepare.split_seed=true")
    root = messy_folder(tmp_path / "cells")
    line = _error_line(*image_folder_overrides(root, **{"prepare.train_size": "1000000.0"}))
    assert "prepare.train_size=1000000.0 must be a positive integer or null" in line
    pick_true = {"dataset.color": "pick", "dataset.channels": "[true]"}
    line = _error_line(*image_folder_overrides(root, **pick_true))
    assert "dataset.channels=[True]" in line
    assert not (project / "failed").exists()
