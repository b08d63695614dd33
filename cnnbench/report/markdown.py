"""Render the report's blocks as GitHub-flavoured Markdown (`report.md`)."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from cnnbench.report.blocks import Block, Bullets, Figure, Heading, Para, Table
from cnnbench.core.inert import md_code

__all__ = ["render_markdown"]

_LINKISH = re.compile(r"(\](?=[(\[:])|\$)")  # a ] that would close a link text, and $ (math)
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _esc(text: str, *, in_table: bool = False) -> str:
    """Escape what GFM would read as markup in plain text (intraword underscores are literal)."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`")
    text = _UNDERSCORE.sub(r"\\_", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _LINKISH.sub(r"\\\1", text)  # no link, image or math from data
    if in_table:
        text = text.replace("|", "\\|").replace("\n", " ")
    return text


def _code(text: str) -> str:
    return md_code(text)


def _spans(spans, *, in_table: bool = False) -> str:
    out = []
    for style, text in spans:
        if style == "b":
            out.append(f"**{_esc(text, in_table=in_table)}**")
        elif style == "em":
            out.append(f"*{_esc(text, in_table=in_table)}*")
        elif style == "code":
            out.append(_code(text))
        else:
            out.append(_esc(text, in_table=in_table))
    return "".join(out)


def _table(t: Table) -> str:
    lines = []
    if t.caption:
        lines += [f"*{_esc(t.caption)}*", ""]
    numeric = t.numeric or (False,) * len(t.headers)
    lines.append("| " + " | ".join(_esc(h, in_table=True) or " " for h in t.headers) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(_esc(c, in_table=True) or " " for c in row) + " |")
    return "\n".join(lines)


def render_markdown(blocks: Sequence[Block], *, figure_links: Mapping[str, str]) -> str:
    """`figure_links` maps a plot name to the relative path of its image; others are skipped."""
    parts: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + _esc(b.text))
        elif isinstance(b, Para):
            parts.append(_spans(b.spans))
        elif isinstance(b, Table):
            parts.append(_table(b))
        elif isinstance(b, Bullets):
            parts.append("\n".join("- " + _spans(item) for item in b.items))
        elif isinstance(b, Figure):
            link = figure_links.get(b.name)
            if link:
                parts.append(f"![{_esc(b.title)}]({link})\n\n*{_esc(b.caption)}*")
        else:  # pragma: no cover - a new block type must be rendered here
            raise TypeError(f"unknown block {b!r}")
    return "\n\n".join(parts) + "\n"
