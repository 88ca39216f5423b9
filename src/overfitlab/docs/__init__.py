"""Stated results, generated from committed files, never typed.

    python -m overfitlab.docs           # rewrite every generated block of README.md and docs/*.md
    python -m overfitlab.docs --check   # exit 1 naming each block that differs from the files

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; ``BLOCKS``
names the function that writes it from a study's committed results (``summary.json``, and the
``runs.csv`` / ``axes.json`` that collect writes uncached so a clone has them), one module per
results page. A test runs ``--check``, so results that change without their docs fail CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import ConfigError, exit_on_config_error
from ..project import project_root
from . import double_descent, randomization, regularization, sources

BLOCKS = {
    "randomization-table": randomization.table_block,
    "randomization-claims": randomization.claims_block,
    "memorization-claims": randomization.memorization_block,
    "double-descent-claims": double_descent.claims_block,
    "double-descent-curves": double_descent.curves_block,
    "regularization-claims": regularization.claims_block,
    "regularization-table": regularization.table_block,
    "sources": sources.sources_block,
    "textures": sources.textures_block,
}
PATTERN = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def rewrite(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten, and the names of the blocks that changed."""
    changed = []

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            raise ConfigError(f"generated block {name!r} is unknown; known: {sorted(BLOCKS)}")
        body = BLOCKS[name](root).rstrip("\n") + "\n"
        if body != match.group(3):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return PATTERN.sub(block, text), changed


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


@exit_on_config_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m overfitlab.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    root = project_root()
    stale, total = [], 0
    for path in documents(root):
        text = path.read_text()
        total += len(PATTERN.findall(text))
        new, changed = rewrite(text, root)
        stale += [f"{path.relative_to(root)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    if args.check and stale:
        print(
            f"error: generated blocks differ from the committed results: {', '.join(stale)}; "
            "run `python -m overfitlab.docs`",
            file=sys.stderr,
        )
        sys.exit(1)
    said = f"{len(stale)} of {total} block(s) rewritten" if stale else f"all {total} block(s) current"
    print(said, file=sys.stderr)
