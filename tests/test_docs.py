"""The README and docs/ a newcomer reads: every stated result is generated from committed files
(``python -m overfitlab.docs``), and every command, path and config key they name exists.

The second half reads each document's fenced code blocks, inline code and links, and checks what
they name against the project itself: ``python -m overfitlab.X`` is a runnable module whose own
parser (argparse, or Hydra's with the config composed) accepts the flags and overrides given;
``scripts/*`` exist and know the subcommands and flags named; repository paths exist (outputs of
a study's stages excepted); config keys exist in ``conf/`` or a committed ``params.yaml``; a
``module.NAME`` of this package exists.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, run_cli
from overfitlab.docs import documents

COMMITTED = ["README.md", "docs", "params.yaml", "reports/metrics/summary.json", "studies", "conf/train.yaml"]


def test_every_generated_block_matches_the_committed_results():
    result = run_cli(sys.executable, "-m", "overfitlab.docs", "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = (ROOT / "docs/regularization.md").read_text()
    assert "<!-- generated: regularization-claims -->\n| claim" in text  # the blocks are filled in


KEEP = {"summary.json", "runs.csv", "axes.json", "params.yaml", "train.yaml"}  # and every .md


def copy_of_the_docs(tmp_path: Path) -> Path:
    """The documents and the committed results only (no DVC outputs): what a clone has."""
    for item in COMMITTED:
        source, target = ROOT / item, tmp_path / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source,
                target,
                ignore=lambda d, names: [
                    n for n in names if (Path(d) / n).is_file() and n not in KEEP and not n.endswith(".md")
                ],
            )
        else:
            shutil.copy(source, target)
    return tmp_path


def docs_command(root: Path, *args: str, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m overfitlab.docs ARGS`` in ``root`` (in this process: the CLI itself is run above)."""
    from overfitlab.docs import main

    monkeypatch.chdir(root)
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _edit_summary(root: Path, study: str, model: str, variant: str, key: str, delta: float) -> None:
    path = root / study / "reports/metrics/summary.json"
    summary = json.loads(path.read_text())
    summary[variant][model][key] += delta
    path.write_text(json.dumps(summary, indent=2))


def test_a_changed_result_without_its_text_fails_the_check(tmp_path, monkeypatch, capsys):
    """A clone with no DVC cache regenerates every block from the committed files alone; one value
    edited in a committed summary.json or runs.csv makes the check fail, naming the block."""
    root = copy_of_the_docs(tmp_path)
    assert docs_command(root, "--check", monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    _edit_summary(
        root, "studies/sources/fashion-notebook", "mlp_300_100", "fashion_mnist", "val_acc_mean", -0.01
    )
    _edit_summary(
        root, "studies/randomization", "cnn_pool", "fashion_mnist+label_noise=1.0", "test_acc_mean", 0.05
    )
    _edit_summary(
        root, "studies/double-descent", "mlp_width", "fashion_mnist+width=48+label_noise=0.2+train_size=4000",
        "test_acc_mean", 0.05,
    )  # fmt: skip
    runs = root / "studies/regularization/reports/metrics/runs.csv"
    table = pd.read_csv(runs)
    table.loc[0, "final_test_acc"] -= 0.1  # one seed's test accuracy, 10 points lower
    table.to_csv(runs, index=False)
    code, stale = docs_command(root, "--check", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1, stale
    for block in (
        "docs/sources.md: sources",
        "docs/randomization.md: randomization-table",
        "docs/randomization.md: randomization-claims",
        "docs/double-descent.md: double-descent-claims",
        "docs/double-descent.md: double-descent-curves",
        "docs/regularization.md: regularization-table",
    ):
        assert block in stale, stale
    assert docs_command(root, monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    assert docs_command(root, "--check", monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    assert (
        "| 1 | 14.8 ± 1.9 | 99.7 | 14.7 ± 0.2 | 64.6 | 18.3 ± 1.0 | 99.9 |"
        in (root / "docs/randomization.md").read_text()
    )  # the edited mean, 5 points up


def test_a_source_study_without_results_is_not_measured_until_they_are_committed(
    tmp_path, monkeypatch, capsys
):
    """The sources table says "not measured" for a study with no summary.json, and goes stale the
    moment its results are committed."""
    root = copy_of_the_docs(tmp_path)
    assert "| `sources/mnist-lesson` | – |" in (root / "docs/sources.md").read_text()
    target = root / "studies/sources/mnist-lesson/reports/metrics/summary.json"
    target.parent.mkdir(parents=True)
    shutil.copy(root / "studies/sources/microscopy/reports/metrics/summary.json", target)
    code, stale = docs_command(root, "--check", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1 and "docs/sources.md: sources" in stale, stale


# --- every command, path and key the documents name exists -------------------------------------

# What a study's stages and the scripts write (never in git): a path under one is an output.
OUTPUTS = ("reports", "runs", "data", "outputs", "mlartifacts", "runs-search", "mlflow.db", ".venv")
# The repository's own top-level entries: a path starting with one must exist.
TOP = ("conf", "src", "scripts", "studies", "docs", "benchmarks", "tests", ".ci", ".dvc")
TOP_FILES = ("params.yaml", "dvc.yaml", "README.md", "CONTRIBUTING.md", "pyproject.toml")
# Paths the documents tell the reader to create.
CREATED = ("studies/mine", "conf/hydra/launcher/mycluster.yaml")
# Keys named as what is refused (a typo the checks catch), not as settings.
REFUSED = ("train.lrr",)
# Commands of other programs the documents use as they are.
EXTERNAL = ("git", "source", "export", "squeue", "sacct", "scancel", "apt-get", "module")
GROUPS = ("model", "dataset", "optimizer", "trainer")
KEY = re.compile(
    r"(?<![\w./$`-])[+~]?((?:train|prepare|study|trainer|model|optimizer|dataset|search|paths|hydra)"
    r"(?:\.[A-Za-z_]\w*)+)"
)
FILE_SUFFIXES = {"py", "yaml", "yml", "csv", "json", "md", "sh", "png", "parquet", "npz", "npy", "pt", "html"}


def snippets(path: Path):
    """(line, kind, text) of each fenced code block ("bash", "yaml"; no language: bash), each inline
    code span (paragraphs joined, so a span may break across lines) and each link target."""
    lines = path.read_text().splitlines()
    block, paragraph, start = None, [], 1
    for number, line in enumerate([*lines, ""], 1):
        fence = re.match(r"\s*```(\w*)", line)
        if block is not None:
            if fence:
                yield block[0], block[1], "\n".join(block[2])
                block = None
            else:
                block[2].append(line)
            continue
        if fence or not line.strip():
            text = " ".join(paragraph)
            for double, single in re.findall(r"``(.+?)``|`([^`]+)`", text):
                yield start, "inline", double or single
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                yield start, "link", target
            paragraph, start = [], number + 1
            if fence:
                block = (number, fence.group(1) or "bash", [])
            continue
        paragraph.append(line.strip())


@cache
def params_keys() -> dict[str, set[str]]:
    """study / prepare / train keys of every committed params.yaml."""
    found: dict[str, set[str]] = {"study": set(), "prepare": set(), "train": set()}
    for path in [ROOT / "params.yaml", *(ROOT / "studies").rglob("params.yaml")]:
        params = yaml.safe_load(path.read_text())
        for section, keys in found.items():
            keys |= set(params.get(section) or {})
    return found


@cache
def conf_files(group: str) -> tuple:
    return tuple(OmegaConf.load(p) for p in sorted((ROOT / "conf" / group).glob("*.yaml")))


@cache
def composed(config: str, overrides: tuple[str, ...]):
    """Hydra's composition of conf/<config>.yaml with ``overrides``, as the entry point would."""
    from hydra import compose, initialize_config_dir

    import overfitlab.resolvers  # noqa: F401  (the ${...} resolvers conf/ uses)

    cwd = os.getcwd()
    os.chdir(ROOT)  # params.yaml is found in the working directory
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="docs"):
            return compose(config, list(overrides), return_hydra_config=True)
    finally:
        os.chdir(cwd)


def _has(config, key: str) -> bool:
    missing = object()
    return OmegaConf.select(config, key, default=missing, throw_on_resolution_failure=False) is not missing


def key_exists(key: str) -> bool:
    """A dotted config key that conf/ or a committed params.yaml has (``model.width``: some model's)."""
    from overfitlab.study import read_train_keys

    head, _, rest = key.partition(".")
    if key in REFUSED:
        return True
    if head == "train":
        return rest.split(".")[0] in read_train_keys(ROOT / "conf") | params_keys()["train"]
    if head in ("study", "prepare"):
        return rest.split(".")[0] in params_keys()[head]
    if head in GROUPS:
        files = conf_files(head) + (conf_files("image_folder") if head == "dataset" else ())
        return any(_has(f, rest) for f in files)
    if head == "search" or key.startswith("hydra.sweeper."):
        return any(_has(f, key) for f in conf_files("search"))
    if key.startswith("hydra.launcher."):
        presets = sorted(p.stem for p in (ROOT / "conf/hydra/launcher").glob("*.yaml"))
        return any(_has(composed("train", (f"hydra/launcher={p}",)), key) for p in presets)
    return _has(composed("train", ()), key)


def repo_path(token: str) -> str | None:
    """``token`` as a glob of the repository when it names a path in it (None: it does not, or it
    names an output or a path the reader creates)."""
    token = token.strip().rstrip(".,;:)")
    parts = token.split("/")
    if parts[0] not in TOP and token not in TOP_FILES:
        return None
    if any(token == c or token.startswith(c + "/") for c in CREATED):
        return None
    token = re.sub(r"\[[^\]]*\]", "", token)  # [<axis>=<value>/...]: an optional part
    token = re.sub(r"<[^>]*>", "*", token).split("...")[0]
    parts = [p for p in token.split("/") if p]
    for i in range(1, len(parts)):
        if parts[i] in OUTPUTS and (ROOT.joinpath(*parts[:i]) / "params.yaml").exists():
            parts = parts[:i]  # an output of the study in parts[:i]
            break
    return "/".join(parts)


def path_problem(token: str) -> str | None:
    pattern = repo_path(token)
    if pattern is None:
        return None
    alternatives = [pattern]
    while any("{" in a for a in alternatives):  # {a,b}: each must exist
        a = next(a for a in alternatives if "{" in a)
        head, body, tail = re.match(r"(.*?)\{([^}]*)\}(.*)", a).groups()
        alternatives.remove(a)
        alternatives += [head + choice + tail for choice in body.split(",")]
    missing = [a for a in alternatives if not any(ROOT.glob(a))]
    return f"path {token!r} does not exist" if missing else None


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _argparse_of(module) -> argparse.ArgumentParser:
    """The parser a module's ``main`` builds, caught as it parses."""

    def catch(self, *args, **kwargs):
        raise _Parser(self)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = catch
    try:
        module.main([])
    except _Parser as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{module.__name__}.main parsed no arguments")


def module_problems(name: str, args: list[str]) -> list[str]:
    """``python -m NAME ARGS``: NAME runs as a program, and its parser accepts ARGS."""
    spec = importlib.util.find_spec(name) if name.startswith("overfitlab.") else None
    if spec is None:
        return [f"`python -m {name}`: no such module of this project"]
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(f"{name}.__main__")
        if spec is None:
            return [f"`python -m {name}`: a package without __main__"]
    source = Path(spec.origin).read_text()
    if spec.name == name and '__name__ == "__main__"' not in source:
        return [f"`python -m {name}`: not runnable (no __main__ block)"]
    if spec.name != name:  # a package: its __main__ calls the package's main
        source += Path(importlib.util.find_spec(name).origin).read_text()
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 (any import error is the finding)
        return [f"`python -m {name}` does not import: {type(exc).__name__}: {exc}"]
    hydra_app = re.search(r'@hydra\.main\(.*config_name="(\w+)"', source)
    if hydra_app:
        return hydra_problems(name, hydra_app.group(1), args)
    if "argparse" in source:
        try:
            _argparse_of(module).parse_args(args)
        except SystemExit:
            return [f"`python -m {name} {' '.join(args)}`: its argparse refuses these arguments"]
        return []
    return (
        [f"`python -m {name}` takes no arguments, given {args}"] if args and "sys.argv" not in source else []
    )


def hydra_problems(name: str, config: str, args: list[str]) -> list[str]:
    """A Hydra app's command line: Hydra's own parser takes the flags, and the config composes with
    the overrides (each value of a swept choice; a key swept over an interval must exist)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    try:
        overrides = get_args_parser().parse_args(args).overrides
    except SystemExit:
        return [f"`python -m {name} {' '.join(args)}`: Hydra's parser refuses these flags"]
    overrides = [_example(o) for o in overrides]
    if name == "overfitlab.search" and not any(o.startswith(("+search=", "search=")) for o in overrides):
        overrides.append(importlib.import_module(name).DEFAULT_SPACE)
    fixed, variants, keys = [], [], []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
        elif isinstance(override.value(), ChoiceSweep):
            variants += [f"{override.get_key_element()}={v}" for v in override.value().list]
        else:
            keys.append(override.get_key_element())
    problems = []
    for variant in [None, *variants]:
        try:
            cfg = composed(config, tuple(fixed + ([variant] if variant else [])))
        except Exception as exc:
            problems.append(f"`python -m {name} {' '.join(args)}`: {str(exc).splitlines()[0]}")
            continue
        problems += [f"`python -m {name}`: no config key {k}" for k in keys if not _has(cfg, k)]
    return list(dict.fromkeys(problems))


def _example(override: str) -> str:
    """``+search=<name>``: the group's first option stands for the placeholder."""
    key, _, value = override.partition("=")
    group = ROOT / "conf" / key.lstrip("+~")
    if re.fullmatch(r"<[^>]*>", value) and group.is_dir():
        return f"{key}={sorted(group.glob('*.yaml'))[0].stem}"
    return override


def command_problems(words: list[str]) -> list[str]:
    """One shell command as the documents write it."""
    while words and re.match(r"[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value before the command
        words = words[1:]
    if words[:1] == ["sudo"]:
        words = words[1:]
    if not words:
        return []
    command, args = words[0], words[1:]
    if command in ("python", "python3"):
        if args[:1] == ["-m"]:
            return module_problems(args[1], args[2:])
        return [p for p in [path_problem(args[0])] if p]
    if command == "bash":
        return [p for p in [path_problem(args[0])] if p]
    if command == "eval":
        inner = re.fullmatch(r"\$\((.*)\)", args[0])
        return command_problems(shlex.split(inner.group(1))) if inner else [f"eval of {args[0]!r}"]
    if command == "cd":
        return [p for p in [path_problem(args[0])] if p]
    if command == "dvc":
        from dvc.cli.parser import get_main_parser

        try:
            get_main_parser().parse_args(args)
        except SystemExit:
            return [f"`dvc {' '.join(args)}`: dvc refuses these arguments"]
        return [p for p in map(path_problem, args) if p]
    if command.startswith("scripts/"):
        script = ROOT / command
        if not (script.is_file() and os.access(script, os.X_OK)):
            return [f"{command} is not an executable script"]
        text, problems = script.read_text(), []
        for sourced in re.findall(r'source "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/([\w/.-]+)"', text):
            text += (script.parent / sourced).read_text()  # what it sources from scripts/
        for arg in args:
            if arg == "--":
                break
            if arg.startswith("--") or re.fullmatch(r"[a-z][a-z-]*", arg):  # a flag or a subcommand
                if not re.search(rf"(?<![\w-]){re.escape(arg)}(?![\w-])", text):
                    problems.append(f"{command} knows no {arg!r}")
            elif problem := path_problem(arg):
                problems.append(problem)
        return problems
    if command in EXTERNAL:
        return []
    return [f"unknown command {command!r}: teach tests/test_docs.py how to check it"]


def shell_problems(text: str) -> list[str]:
    problems = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        for part in re.split(r"&&|\|\||;|\|", line):
            if part.strip():
                problems += command_problems(shlex.split(part))
    return problems


def _flat(value, prefix: str = "") -> list[str]:
    if not isinstance(value, dict):
        return [prefix]
    return [k for key, v in value.items() for k in _flat(v, f"{prefix}.{key}" if prefix else key)]


def yaml_problems(text: str) -> list[str]:
    """A params.yaml fragment (its keys, its axes' keys, the groups it names) or a launcher preset."""
    block = yaml.safe_load(text)
    if set(block) <= {"study", "prepare", "train", "launcher"}:
        keys = [
            k
            for k in _flat({k: v for k, v in block.items() if k != "launcher"})
            if not k.startswith("study.axes")
        ]
        keys += list((block.get("study") or {}).get("axes") or {})
        problems = [f"params key {k} does not exist" for k in keys if not key_exists(k)]
        for group, names in (("dataset", "datasets"), ("model", "models")):
            problems += [
                f"{group} {n} is not in conf/{group}/"
                for n in (block.get("study") or {}).get(names, [])
                if not (ROOT / f"conf/{group}/{n}.yaml").exists()
            ]
        return problems
    preset = (block.get("defaults") or [None])[0]
    if (ROOT / f"conf/hydra/launcher/{preset}.yaml").exists():
        launcher = composed("train", (f"hydra/launcher={preset}",)).hydra.launcher
        return [
            f"launcher {preset} has no key {k}" for k in block if k != "defaults" and not _has(launcher, k)
        ]
    return [f"a YAML block tests/test_docs.py does not know: {text.splitlines()[0]!r}"]


def inline_problems(span: str, folder: Path) -> list[str]:
    if re.match(r"(sudo |eval |bash |dvc |python3? |scripts/|[A-Z_]+=\S* scripts/)", span):
        return shell_problems(span)
    problems = [
        f"config key {k} does not exist"
        for k in KEY.findall(span)
        if k.rsplit(".", 1)[-1] not in FILE_SUFFIXES and not key_exists(k)
    ]
    reference = re.fullmatch(r"([a-z_]+(?:\.[a-z_]+)*)\.([A-Za-z_]\w*)", span)
    if reference and reference[2] not in FILE_SUFFIXES and not KEY.fullmatch(span):
        try:
            reference = reference if importlib.util.find_spec(f"overfitlab.{reference[1]}") else None
        except ModuleNotFoundError:  # torch.func.x: not a module of this package
            reference = None
    if reference and reference[2] not in FILE_SUFFIXES and not KEY.fullmatch(span):
        if not hasattr(importlib.import_module(f"overfitlab.{reference[1]}"), reference[2]):
            problems.append(f"overfitlab.{reference[1]} has no {reference[2]}")
    if re.fullmatch(r"[\w.<>{}*,/\[\]=-]+", span) and (problem := path_problem(span)):
        problems.append(problem)
    return problems


def link_problem(target: str, folder: Path) -> str | None:
    if re.match(r"[a-z]+:", target) or target.startswith("#"):
        return None
    path = (folder / target.split("#")[0]).resolve()
    return None if path.exists() else f"link {target!r} leads nowhere"


@pytest.mark.parametrize("document", documents(ROOT), ids=lambda p: p.name)
def test_every_command_path_and_key_the_docs_name_exists(document):
    problems = []
    for line, kind, text in snippets(document):
        if kind == "inline":
            found = inline_problems(text, document.parent)
        elif kind == "link":
            found = [p for p in [link_problem(text, document.parent)] if p]
        elif kind == "yaml":
            found = yaml_problems(text)
        elif kind in ("bash", "sh", "console"):
            found = shell_problems(text)
        else:
            found = [f"a {kind!r} code block tests/test_docs.py does not check"]
        problems += [f"{document.relative_to(ROOT)}:{line}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_the_docs_check_finds_what_does_not_exist(tmp_path):
    """The checks above fail on what they should: a wrong module, flag, override, key, path, script
    subcommand, link and params.yaml entry."""
    page = tmp_path / "page.md"
    page.write_text(
        "Run `python -m overfitlab.nothing` or `python -m overfitlab.docs --fast`.\n\n"
        "```bash\npython -m overfitlab.train -m model=nonexistent seed=0,1\n"
        "scripts/mlflow-server.sh launch\n```\n\n"
        "Set `train.no_such_key` and `model.no_such_key` in `conf/model/nonexistent.yaml`; see "
        "`identity.NO_SUCH_NAME` and [there](nowhere.md).\n\n"
        "```yaml\nstudy: {models: [nonexistent], axes: {train.nothing: [1, 2]}}\n```\n"
    )
    problems = []
    for _, kind, text in snippets(page):
        problems += {
            "inline": lambda t: inline_problems(t, tmp_path),
            "link": lambda t: [p for p in [link_problem(t, tmp_path)] if p],
            "yaml": yaml_problems,
            "bash": shell_problems,
        }[kind](text)
    expected = [
        "overfitlab.nothing",
        "overfitlab.docs --fast",
        "model=nonexistent",
        "knows no 'launch'",
        "train.no_such_key",
        "model.no_such_key",
        "conf/model/nonexistent.yaml",
        "NO_SUCH_NAME",
        "nowhere.md",
        "model nonexistent",
        "train.nothing",
    ]
    for needle in expected:
        assert any(needle in p for p in problems), (needle, problems)
