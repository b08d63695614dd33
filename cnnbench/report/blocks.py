"""The report's format-neutral blocks: headings, paragraphs, tables, bullets and figures.

The document (`document.build_document`) and its sections (`deployment`, ...) build these; the
Markdown and HTML renderers only escape and lay them out, so both always say the same thing.
A leaf: the section builders import it without importing the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

__all__ = ["Span", "Heading", "Para", "Table", "Bullets", "Figure", "Block", "P", "B", "anchor"]


# A span of inline text: (style, text) with style "" (plain), "b" (bold), "code" or "em".
Span = tuple[str, str]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Para:
    spans: tuple[Span, ...]
    cls: str = ""


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    row_classes: tuple[str, ...] = ()  # per row: "", "invalid" or "warn"
    caption: str = ""
    numeric: tuple[bool, ...] = ()  # per column: right-align


@dataclass(frozen=True)
class Bullets:
    items: tuple[tuple[Span, ...], ...]


@dataclass(frozen=True)
class Figure:
    name: str  # plot id, see plots.PlotSpec
    title: str
    caption: str


Block = Union[Heading, Para, Table, Bullets, Figure]


def P(*parts: str | Span, cls: str = "") -> Para:
    return Para(tuple(("", p) if isinstance(p, str) else p for p in parts), cls)


def B(text: str) -> Span:
    return ("b", text)


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
