"""The hardware a run records (machine.hardware): CPU model and GPU name, as tags of its MLflow run."""

from __future__ import annotations

import platform

import pytest
import torch
from omegaconf import OmegaConf

from overfitlab import machine


def test_the_cpu_model_is_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
    )
    monkeypatch.setattr(machine, "CPUINFO", str(cpuinfo))
    assert machine.hardware()["cpu_model"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"


def test_without_a_model_name_the_cpu_model_is_platforms(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "CPUINFO", str(tmp_path / "absent"))
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert machine.hardware()["cpu_model"] == "arm"
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n")
    monkeypatch.setattr(machine, "CPUINFO", str(tmp_path / "arm"))
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert machine.hardware()["cpu_model"] is None


def test_the_gpu_is_cuda_device_0_or_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine.hardware()["gpu"] is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert machine.hardware()["gpu"] == "NVIDIA H200"


@pytest.mark.slow
def test_a_child_run_is_tagged_with_the_hardware(tmp_path, monkeypatch):
    from overfitlab.tracking import run_logger as tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    cfg = OmegaConf.create(
        {"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "hw"}}
    )
    monkeypatch.setattr(tracking, "hardware", lambda: {"cpu_model": "Test CPU", "gpu": None})
    run = tracking.RunLogger(cfg, {"seed": 0}, {"run_key": "a"}, run_name="seed 0")
    tags = run.client.get_run(run.run_id).data.tags
    assert tags["cpu_model"] == "Test CPU" and "gpu" not in tags

    monkeypatch.setattr(tracking, "hardware", lambda: {"cpu_model": "Test CPU", "gpu": "NVIDIA H200"})
    run = tracking.RunLogger(cfg, {"seed": 1}, {"run_key": "b"}, run_name="seed 1")
    assert run.client.get_run(run.run_id).data.tags["gpu"] == "NVIDIA H200"
