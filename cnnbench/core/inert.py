"""Outputs are inert: text that came from data (a model name, a hostname, an error message)
cannot become a formula, a link, HTML or markup in what cnnbench writes.

- CSV (`csv_cell`): a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is
  read by spreadsheets as a formula (OWASP "CSV Injection"); it is prefixed with a single quote,
  as OWASP recommends. Numbers are written as numbers and never prefixed (a negative number
  stays a number).
- Markdown for pull requests (`md_text`, `md_code`): every character GitHub-flavoured Markdown
  gives a meaning inside a line (HTML tags and entities, link and image brackets, emphasis,
  code, tables, `@mentions`, `#123` references, `$math$`) is backslash-escaped; code spans get a fence longer than any run of
  backticks inside them, so nothing can close them early. Newlines become spaces (one table
  row stays one row).
- matplotlib: `MPL_RC` turns mathtext parsing off (`text.parse_math: False`, `text.usetex:
  False`), so a `$\\macro$` in a model name is drawn as written instead of crashing the report.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["csv_cell", "md_text", "md_code", "Markdown", "MPL_RC"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: text starting a formula gets a leading `'`.
    A carriage return becomes a newline (which the writer quotes: a bare CR it would not)."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


class Markdown(str):
    """Text that is already safe Markdown (built by us from escaped pieces)."""


# What GFM (and GitHub's comments) give a meaning to inside a line: backslash escapes, code,
# emphasis, link and image brackets, HTML tags and entities, @mentions, #issue references,
# $math$, ~strike~ and table pipes. Each may be backslash-escaped; the rest renders as written.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&@#$~|])")


def md_text(value: Any) -> Markdown:
    """Data as Markdown text that renders as written: no HTML, link, mention or markup."""
    if isinstance(value, Markdown):
        return value
    text = " ".join(str(value).splitlines()).replace("\x00", "")
    return Markdown(_MD_SPECIAL.sub(r"\\\1", text))


def md_code(value: Any) -> Markdown:
    """Data as an inline code span that nothing inside can close (and a table cell's `|`
    escaped, which GitHub requires even inside code)."""
    text = " ".join(str(value).splitlines()).replace("\x00", "")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return Markdown(f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}")


MPL_RC = {"text.parse_math": False, "text.usetex": False}
