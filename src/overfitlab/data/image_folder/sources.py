"""Finding the images of an image-folder dataset: one ``Source`` per file, and what was left out.

Class names are the sub-folders of ``dataset.root``; extra test sets must use the same class
folders. Phantom files (``.DS_Store``, ``._*``), other file types, dangling links and link loops
are listed with the reason instead of stopping the stage.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import require


@dataclass(frozen=True)
class Source:
    """One image file of one class: ``name`` is how logs and the manifest call it."""

    path: str
    name: str
    label: int
    group: str
    test_set: str | None = None  # None: the main root (split by the split rule); else an extra test set


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def walk_images(directory: Path, extensions: set[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``directory`` (sorted, sub-folders included) and the entries left out.

    Symbolic links are followed, but a folder already visited (a link loop) is not entered again.
    """
    files, ignored, seen = [], [], set()
    stack = [directory]
    while stack:
        folder = stack.pop()
        try:
            key = (folder.stat().st_dev, folder.stat().st_ino)
            if key in seen:
                ignored.append((folder, "ignored: folder already visited (symbolic link loop)"))
                continue
            seen.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            ignored.append((folder, f"unreadable folder: {exc.strerror or exc}"))
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if _hidden(entry.name):
                ignored.append((path, "ignored: hidden or phantom file (.DS_Store, ._*, ...)"))
            elif entry.is_dir():  # follows links
                subfolders.append(path)
            elif entry.is_symlink() and not path.exists():
                ignored.append((path, "unreadable: dangling symbolic link"))
            elif path.suffix.lower() not in extensions:
                ignored.append((path, f"ignored: not an image file ({path.suffix or 'no extension'})"))
            else:
                files.append(path)
        stack.extend(reversed(subfolders))
    return sorted(files), ignored


def class_folders(root: Path, key: str) -> list[str]:
    require(
        root.is_dir(),
        f"{key}={str(root)!r} is not a folder: point it at a folder with one sub-folder per class",
    )
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not _hidden(e.name))


def find_sources(dataset) -> tuple[list[str], list[Source], list[dict]]:
    """Class names, every image file of the main root and the extra test sets, and what was left out."""
    root = Path(dataset.root)
    classes = class_folders(root, "dataset.root")
    require(
        len(classes) >= 2,
        f"dataset.root={str(root)!r} has {len(classes)} class folder(s) {classes}: "
        "a classifier needs at least two (one sub-folder per class)",
    )
    extensions = {e.lower() for e in dataset.extensions}
    pattern = re.compile(dataset.split.group_pattern) if dataset.split.group_pattern else None
    sources, skipped = [], []
    sets = [(None, root)] + [(str(n), Path(r)) for n, r in (dataset.extra_test_sets or {}).items()]
    for test_set, set_root in sets:
        prefix = f"{test_set}:" if test_set else ""
        if test_set:
            found = class_folders(set_root, f"dataset.extra_test_sets.{test_set}")
            unknown = sorted(set(found) - set(classes))
            require(
                not unknown,
                f"dataset.extra_test_sets.{test_set}: class folder(s) {unknown} are not "
                f"classes of dataset.root {classes}: rename or remove them",
            )
        for label, name in enumerate(classes):
            folder = set_root / name
            if not folder.is_dir():
                continue
            files, ignored = walk_images(folder, extensions)
            skipped += [
                {"file": prefix + p.relative_to(set_root).as_posix(), "reason": r} for p, r in ignored
            ]
            for path in files:
                inside = path.relative_to(folder).as_posix()
                match = pattern.search(inside) if pattern else None
                group = (match.group(1) if match and match.groups() else match.group(0)) if match else inside
                sources.append(
                    Source(str(path), f"{prefix}{name}/{inside}", label, f"{prefix}{name}/{group}", test_set)
                )
    return classes, sources, skipped
