"""The report's figures drawn and encoded as PNG, in page order.

``PAGE`` lists the modules that declare the page's figures (``@figure``, registry.py), one per page
section (regularization's beside the comparison), in the order the page shows them; within a
module, its figures keep the order it defines them in. A figure registered elsewhere (a test's)
follows them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from . import comparison, double_descent, inside, memorization, question, registry, regularization, variant
from .inputs import ReportInputs
from .panels import DPI
from .registry import Figure

PAGE = [question, double_descent, comparison, regularization, variant, memorization, inside]


def in_page_order() -> list[Figure]:
    """Every registered figure, its module's place in ``PAGE`` first, then its place in the module."""
    place = {module.__name__: i for i, module in enumerate(PAGE)}
    return sorted(registry.REGISTRY.values(), key=lambda spec: place.get(spec.draw.__module__, len(PAGE)))


@dataclass(frozen=True)
class Rendered:
    name: str  # the PNG's file name without .png; <figure>__<key> for one image per key
    caption: str
    png: bytes
    section: str = "comparison"
    key: str | None = None  # the variant (or CNN) of a figure drawn once per key


def png(fig) -> bytes:
    """The figure as a PNG with a 256-colour palette: about a third of the bytes of full colour for
    these plots, so the one-file page opens quickly; the plots' few colours survive it."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    small = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(small, format="PNG", optimize=True)
    return small.getvalue()


def render(inputs: ReportInputs) -> list[Rendered]:
    """Every registered figure whose ``when`` holds, drawn and encoded as PNG, in page order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rendered = []
    for spec in in_page_order():
        if not spec.when(inputs):
            continue
        np.random.seed(0)  # seaborn's strip-plot jitter draws from numpy's global generator
        drawn = spec.draw(inputs)
        for key, fig in drawn.items() if isinstance(drawn, dict) else [(None, drawn)]:
            name = spec.name if key is None else f"{spec.name}__{key}"
            rendered.append(Rendered(name, spec.caption, png(fig), spec.section, key))
            plt.close(fig)
    return rendered
