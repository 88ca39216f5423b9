"""What a module's code does, without its layout: the one fingerprint behind a run's code hash
(``identity.code_hash``) and each measure's fingerprint (``measures.fingerprints``)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def code_fingerprint(source: str) -> str:
    """The syntax tree with docstrings dropped, so reformatting, comments and docstrings do not
    retrain a study, while any change to the code does."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def files_digest(files, package: Path) -> str:
    """One hash over ``files``: each one's path (relative to ``package``) and code, in order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).relative_to(package).as_posix().encode())
        digest.update(code_fingerprint(Path(path).read_text()).encode())
    return digest.hexdigest()[:16]
