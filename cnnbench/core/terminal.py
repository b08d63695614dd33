"""What reaches a terminal: data made visible, never obeyed. Pure.

Strings that come from files, the history store, the environment or a model (case keys,
commits, branches, error and parity messages, hostnames) may hold control characters, escape
sequences (a forged colour, a cleared screen, a window title, a hyperlink) or bidi overrides
(text that reads differently from what it is). `visible` shows every such character as an
escape (`\\x1b`, `\\n`, `\\u202e`), so a value stays one value on one line: a newline in a case key
never starts a new output line. `guard` is the net under it: every command's stdout and
stderr pass through a `GuardedStream` (installed once by `cnnbench.cli.main`) that makes the
same characters visible in whatever was printed, except the line breaks and tabs of the text
itself and, on a real terminal, the colour and cursor sequences the console library writes.
CSV, Markdown and HTML have their own escaping (`cnnbench.core.inert`); this is the terminal's.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TextIO

__all__ = ["visible", "message_line", "is_clean", "GuardedStream", "guard"]

# C0 controls, DEL, C1 controls; the bidi embeddings, overrides and isolates; the zero-width
# and direction marks, the line and paragraph separators, the BOM and interlinear annotations:
# characters that move, hide or reorder what a reader sees.
_FORMAT = "\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb"
_HIDDEN = "\x00-\x1f\x7f-\x9f" + _FORMAT
_HIDDEN_RE = re.compile(f"[{_HIDDEN}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# In a stream: the same, but the text's own line breaks and tabs are layout, not data.
_STREAM_RE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMAT}]")
# What a console library writes to a real terminal: CSI sequences (colour, cursor movement,
# line erase) and the carriage return of a progress bar. Nothing else passes on a terminal.
_CSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any) -> str:
    """`text` as a string with every control character, escape sequence introducer and bidi
    or invisible formatting character shown as a backslash escape (newlines included)."""
    return _HIDDEN_RE.sub(lambda m: _escape(m.group()), str(text))


def message_line(text: Any) -> str:
    """One line of an error or a warning: its own line breaks become spaces (a message
    composed over several lines reads as one), and whatever else is hidden is made visible."""
    line = " ".join(str(text).split("\n"))
    line = " ".join(line.split("\r"))
    if not line.strip() and isinstance(text, BaseException):
        line = type(text).__name__
    return visible(line)


def is_clean(text: str) -> bool:
    """True when `text` holds no hidden character other than newlines and tabs (a test's check)."""
    return _STREAM_RE.search(text) is None


class GuardedStream:
    """A text stream that writes what it is given with hidden characters made visible.

    On a real terminal (`isatty()`), CSI sequences and carriage returns pass, since the console
    library draws colours and the progress bar with them; on a pipe or a file nothing hidden
    passes. Every other attribute is the wrapped stream's (fileno, encoding, isatty, flush)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False
        try:
            self._tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            self._tty = False

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def _clean(self, text: str) -> str:
        if not self._tty:
            return _STREAM_RE.sub(lambda m: _escape(m.group()), text)
        parts = []
        last = 0
        for m in _CSI_RE.finditer(text):
            parts.append(_STREAM_RE.sub(lambda c: c.group() if c.group() == "\r" else _escape(c.group()),
                                        text[last : m.start()]))
            parts.append(m.group())
            last = m.end()
        parts.append(_STREAM_RE.sub(lambda c: c.group() if c.group() == "\r" else _escape(c.group()), text[last:]))
        return "".join(parts)

    def write(self, text: str) -> int:
        try:
            self._stream.write(self._clean(text))
        except BrokenPipeError:
            self.broken = True  # the reader went away (`| head`): cnnbench.cli ends quietly
            raise
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self.broken = True
            raise

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard(streams: Any) -> Callable[[], None]:
    """Wrap `sys.stdout` and `sys.stderr` of the module-like `streams` (normally `sys`) in
    GuardedStreams; returns the function that puts the originals back."""
    out, err = streams.stdout, streams.stderr
    if not isinstance(out, GuardedStream) and out is not None:
        streams.stdout = GuardedStream(out)
    if not isinstance(err, GuardedStream) and err is not None:
        streams.stderr = GuardedStream(err)

    def restore() -> None:
        streams.stdout, streams.stderr = out, err

    return restore
