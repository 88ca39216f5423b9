"""The figure registry: each figure of the report declares itself, in one place, with ``@figure``.

A figure is a function of one ``ReportInputs`` (everything collect wrote, read once: ``inputs.py``)
that returns a matplotlib figure, or a dict ``{key: figure}`` for one image per key (named
``<name>__<key>``). ``@figure(name, when, section)`` registers it: the name is the PNG's file name
and the image's ``alt``, its docstring is the caption under it in the page, ``when(inputs)`` says
whether the study has what the figure shows (default: always), ``section`` where the page shows it.

Each page section's figures live in the module of that name (``question.py``, ``comparison.py``,
...); ``rendering.PAGE`` lists those modules in page order and draws what they register.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .inputs import ReportInputs


def always(inputs: ReportInputs) -> bool:
    return True


# Where a figure goes in the page, in page order: the study's question against its axes first, then
# the comparison of architectures, the curves of each variant (one collapsible section per variant
# when there are several), and what the data and the networks look like.
SECTIONS = {
    "question": "The study's question: against each axis",
    "double_descent": "Double descent: error against capacity, training time and data size",
    "comparison": "Comparing the architectures",
    "variant": "Learning curves and predictions",
    "memorization": "Which training examples were learned late, forgotten, memorized",
    "inside": "The data and inside the networks",
}


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    draw: Callable[[ReportInputs], object]
    when: Callable[[ReportInputs], bool] = always
    section: str = "comparison"


REGISTRY: dict[str, Figure] = {}


def caption_of(draw: Callable) -> str:
    """A figure's caption: its function's docstring, as one paragraph."""
    return " ".join((draw.__doc__ or "").split())


def figure(name: str, when: Callable[[ReportInputs], bool] = always, section: str = "comparison"):
    """Register the decorated function as the figure ``name``, its docstring the caption (see the
    module docstring); ``section`` is where the page shows it (``SECTIONS``)."""
    if section not in SECTIONS:
        raise ValueError(f"figure {name!r}: section {section!r} is not one of {list(SECTIONS)}")

    def register(draw: Callable[[ReportInputs], object]):
        if name in REGISTRY:
            raise ValueError(f"figure {name!r} is registered twice")
        if not caption_of(draw):
            raise ValueError(f"figure {name!r} has no caption: give {draw.__name__} a docstring")
        REGISTRY[name] = Figure(name, caption_of(draw), draw, when, section)
        return draw

    return register


def section_figure(section: str, when: Callable[[ReportInputs], bool] = always):
    """``@figure`` for the figures of one page section: a section's module binds its ``section`` (and
    the ``when`` its figures share) once, e.g. ``figure = section_figure("memorization", has_examples)``."""
    return partial(figure, section=section, when=when)
