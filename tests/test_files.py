"""Atomic outputs and the code version recorded with every run."""

import functools
import subprocess

import pytest

from overfitlab.files import atomic_directory, atomic_write_text, git_commit


def test_atomic_directory_replaces_whole_or_leaves_the_old_one(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed mid-way")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp left behind


def test_atomic_write_leaves_no_temp_file(tmp_path):
    atomic_write_text(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert oct((tmp_path / "x.json").stat().st_mode & 0o777) == "0o644"


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_git_commit_marks_dirty_code_but_not_dvc_lock(tmp_path):
    git = functools.partial(_git, tmp_path)

    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "dvc.lock").write_text("v1\n")
    git("add", "-A")
    git("commit", "-qm", "x")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "dvc.lock").write_text("v2\n")  # dvc repro rewrites it between stages
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_git_commit_from_a_study_directory_sees_edits_to_the_shared_code(tmp_path):
    """A study in studies/<name>/ shares src/ and conf/ with the project: editing them is dirty code."""

    git = functools.partial(_git, tmp_path)

    study = tmp_path / "studies" / "mine"
    study.mkdir(parents=True)
    (study / "params.yaml").write_text("study: {}\n")
    (study / "dvc.lock").write_text("v1\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "x")
    head = git_commit(study)
    assert not head.endswith("-dirty")
    (study / "dvc.lock").write_text("v2\n")
    assert git_commit(study) == head
    (tmp_path / "src" / "train.py").write_text("a = 2\n")
    assert git_commit(study) == head + "-dirty"


def test_training_code_fingerprint_ignores_layout_but_not_code():
    """Reformatting, comments and docstrings keep a study's runs; a change to what the code does not."""
    from overfitlab.fingerprint import code_fingerprint

    source = 'def f(x):\n    """Why."""\n    return x + 1  # one\n'
    same = 'def f(x):\n    """Another why, longer."""\n    # a comment\n    return (\n        x + 1\n    )\n'
    assert code_fingerprint(source) == code_fingerprint(same)
    assert code_fingerprint(source) != code_fingerprint(source.replace("x + 1", "x + 2"))
    assert code_fingerprint(source) != code_fingerprint(source.replace("def f", "def g"))
