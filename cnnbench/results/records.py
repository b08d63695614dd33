"""Typed results records: a results file is parsed and checked once, at the file boundary.

Why: the results file is the contract CI users script against. Read as loose dicts, a damaged or
hand-edited file ended each consumer in its own traceback (or hang, or a string `"987"` read as
three samples). `load(path)` reads a regular file of bounded size, refuses duplicate keys,
non-finite numbers, huge integers and deep nesting, checks every known field's type and range,
and returns a frozen `ResultsFile` of frozen `CaseRecord`s; an error is one line naming the file,
the case (index and key) and the field. The derived decisions (valid, median and dispersion,
backend label, speedup over eager, setup time, cold start) are properties here and nowhere else.

Sections this version does not declare (other features' optional per-case fields, a newer
writer's additions) are kept verbatim in `extra`, checked only generically (bounded depth and
size, finite numbers), never refused. docs/results.md describes the format.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from cnnbench.core.errors import ResultsFileError
from cnnbench.results import frame
from cnnbench.results.schema import SCHEMA_VERSION, migrate
from cnnbench.core.spec import CaseSpec
from cnnbench.stats import basic as stats

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LIST_LENGTH",
    "CASE_FIELDS",
    "CaseRecord",
    "ResultsFile",
    "load",
    "read_json",
    "parse_results",
    "parse_record",
    "loads_strict",
    "checked_record",
    "from_dict",
    "thaw",
    "speedups_over_eager",
    "backend_label",
    "setup_time",
    "cold_start_ms",
]

# Bounds of what a results file may hold. A suite of a few hundred cases with thousands of raw
# samples per repeat is tens of MB; these bounds are far above that and far below harm.
MAX_FILE_BYTES = 512 * 2**20
MAX_DEPTH = 32  # nesting of mappings and lists, the top level being depth 1
MAX_INT_DIGITS = 30
MAX_LIST_LENGTH = 5_000_000

_STATUS_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Bad(Exception):
    """A field that fails its check: `where` is the field path, `message` what is wrong."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


# --------------------------------------------------------------------------------------------
# Reading the file: regular file, bounded size, strict JSON


def read_json(path: str | os.PathLike[str], *, what: str = "results file", max_bytes: int | None = None) -> Any:
    """The JSON value of a regular file of at most `max_bytes`, parsed strictly.

    Refuses (ResultsFileError, one line): a missing path, a directory, a FIFO, device or socket
    (never opened for reading, so never a hang), a file over the size cap, text that is not UTF-8
    or not JSON, duplicate keys in a mapping, NaN/Infinity, numbers that overflow a float,
    integers of more than MAX_INT_DIGITS digits and nesting deeper than MAX_DEPTH.
    """
    name = os.fspath(path)
    cap = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise ResultsFileError(name, f"no such {what}") from None
    except OSError as exc:
        raise ResultsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte in the path
        raise ResultsFileError(name, f"no such {what} (the path holds a NUL byte)") from None
    if stat.S_ISDIR(st.st_mode):
        raise ResultsFileError(name, f"is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ResultsFileError(name, f"is not a regular file (a FIFO, device or socket), not a {what}")
    if st.st_size > cap:
        raise ResultsFileError(name, f"is {st.st_size:,} bytes, more than the {cap:,} a {what} may have")
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ResultsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
            raise ResultsFileError(name, f"is not a regular file, not a {what}")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise ResultsFileError(name, f"is more than the {cap:,} bytes a {what} may have")
            chunks.append(chunk)
    except OSError as exc:
        raise ResultsFileError(name, f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(name, f"is not UTF-8 text (byte {exc.start}): truncated or not a {what}?") from None
    try:
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise ResultsFileError(name, f"not valid JSON at line {exc.lineno} (truncated or corrupted?): {exc.msg}") from None
    except _Bad as exc:
        raise ResultsFileError(name, exc.message) from None
    except RecursionError:
        raise ResultsFileError(name, f"nested more than {MAX_DEPTH} levels deep") from None
    try:
        _check_depth(data)
    except _Bad as exc:
        raise ResultsFileError(name, f"{exc.where}: {exc.message}" if exc.where else exc.message) from None
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Bad("", f"duplicate key {_short(key)} in one mapping (which one counts is ambiguous)")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Bad("", f"{name} is not a number a results file may hold (non-finite)")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Bad("", f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def loads_strict(text: str | bytes, *, where: str) -> Any:
    """JSON text from elsewhere than a file (a row of the history store), parsed with the rules
    of `read_json`: no duplicate keys, no NaN or overflowing number, bounded integers and depth.

    Raises:
        ResultsFileError: one line naming `where` and what is wrong.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
        _check_depth(data)
    except UnicodeDecodeError as exc:
        raise ResultsFileError(where, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(where, f"not valid JSON (truncated or corrupted?): {exc.msg}") from None
    except _Bad as exc:
        raise ResultsFileError(where, f"{exc.where}: {exc.message}" if exc.where else exc.message) from None
    except RecursionError:
        raise ResultsFileError(where, f"nested more than {MAX_DEPTH} levels deep") from None
    return data


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad("", f"the number {_short(text)} overflows a float (non-finite)")
    return value


def _check_depth(data: Any) -> None:
    """Nesting and list lengths, iteratively (no recursion on what the file says)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise _Bad("", f"nested more than {MAX_DEPTH} levels deep")
            if len(value) > MAX_LIST_LENGTH:
                raise _Bad("", f"a list or mapping of {len(value):,} items (at most {MAX_LIST_LENGTH:,})")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Field checks (each raises _Bad with the field's path)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {_short(value)}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(where: str, value: Any, *, low: float | None = 0.0, strict: bool = False, optional: bool = True) -> float | int | None:
    if value is None and optional:
        return None
    if not _is_number(value):
        raise _Bad(where, f"expected a number, got {_describe(value)}")
    if low is not None and (value <= low if strict else value < low):
        raise _Bad(where, f"expected a number {'>' if strict else '>='} {low:g}, got {value!r}")
    return value


def _integer(where: str, value: Any, *, low: int | None = 0, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(where, f"expected an integer, got {_describe(value)}")
    if low is not None and value < low:
        raise _Bad(where, f"expected an integer >= {low}, got {value}")
    return value


def _string(where: str, value: Any, *, optional: bool = True, nonempty: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Bad(where, f"expected a string, got {_describe(value)}")
    if nonempty and not value:
        raise _Bad(where, "expected a non-empty string")
    return value


def _boolean(where: str, value: Any, *, optional: bool = True) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise _Bad(where, f"expected true or false, got {_describe(value)}")
    return value


def _mapping(where: str, value: Any, *, optional: bool = True) -> Mapping[str, Any] | None:
    """A mapping checked generically (its contents were bounded and finite when parsed)."""
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a mapping, got {_describe(value)}")
    return freeze(value)


def _list(where: str, value: Any, item: Callable[[str, Any], Any], *, optional: bool = False) -> tuple[Any, ...]:
    if value is None and optional:
        return ()
    if not isinstance(value, list):
        raise _Bad(where, f"expected a list, got {_describe(value)}")
    return tuple(item(f"{where}[{i}]", v) for i, v in enumerate(value))


def _latency(where: str, value: Any) -> float:
    return _number(where, value, strict=True, optional=False)  # type: ignore[return-value]


def _duration(where: str, value: Any) -> float:
    return _number(where, value, optional=False)  # type: ignore[return-value]


def _text(where: str, value: Any) -> str:
    return _string(where, value, optional=False)  # type: ignore[return-value]


def _status(where: str, value: Any) -> str:
    """Any short lower-case word: statuses a newer cnnbench adds still load (only `ok` is valid)."""
    text = _string(where, value, optional=False)
    if not _STATUS_RE.match(text or ""):
        raise _Bad(where, f"expected a status word such as 'ok' or 'error', got {_short(text)}")
    return text  # type: ignore[return-value]


def freeze(value: Any) -> Any:
    """A read-only deep copy of parsed JSON: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON again (dicts and lists) from `freeze`'s output; anything else as it is."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# The records


@dataclass(frozen=True, slots=True)
class CaseSpecView:
    """The `spec` section of a record, checked (what was measured; `cnnbench.core.spec.CaseSpec`)."""

    model: str
    batch_size: int
    input_size: tuple[int, ...]
    backend: str
    precision: str
    device: str
    threads: int
    channels_last: bool
    mode: str
    options: Mapping[str, Any]
    source: str | None
    model_kwargs: Mapping[str, Any]
    raw: Mapping[str, Any]  # the section as written (unknown spec keys included)

    def case_spec(self):
        """The `cnnbench.core.spec.CaseSpec` this record measured."""

        return CaseSpec.from_dict(thaw(self.raw))


def _spec(where: str, value: Any) -> CaseSpecView:
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a mapping, got {_describe(value)}")
    model = _string(f"{where}.model", value.get("model"), optional=False, nonempty=True)
    batch = _integer(f"{where}.batch_size", value.get("batch_size"), low=1, optional=False)
    size = _list(f"{where}.input_size", value.get("input_size"), lambda w, v: _integer(w, v, low=1, optional=False))
    if len(size) != 3:
        raise _Bad(f"{where}.input_size", f"expected [channels, height, width], got {len(size)} numbers")
    options = _mapping(f"{where}.options", value.get("options")) or MappingProxyType({})
    for k, v in options.items():
        if isinstance(v, (Mapping, tuple)):
            raise _Bad(f"{where}.options.{k}", f"expected a scalar option value, got {_describe(thaw(v))}")
    return CaseSpecView(
        model=model,  # type: ignore[arg-type]
        batch_size=batch,  # type: ignore[arg-type]
        input_size=size,
        backend=_string(f"{where}.backend", value.get("backend", "eager"), optional=False, nonempty=True),  # type: ignore[arg-type]
        precision=_string(f"{where}.precision", value.get("precision", "fp32"), optional=False, nonempty=True),  # type: ignore[arg-type]
        device=_string(f"{where}.device", value.get("device", "cpu"), optional=False, nonempty=True),  # type: ignore[arg-type]
        threads=_integer(f"{where}.threads", value.get("threads", 1), low=0, optional=False),  # type: ignore[arg-type]
        channels_last=bool(_boolean(f"{where}.channels_last", value.get("channels_last", False), optional=False)),
        mode=_string(f"{where}.mode", value.get("mode", "inference"), optional=False, nonempty=True),  # type: ignore[arg-type]
        options=options,
        source=_string(f"{where}.source", value.get("source")),
        model_kwargs=_mapping(f"{where}.model_kwargs", value.get("model_kwargs")) or MappingProxyType({}),
        raw=_mapping(where, value, optional=False),  # type: ignore[arg-type]
    )


def _latency_summary(where: str, value: Any) -> Mapping[str, Any] | None:
    summary = _mapping(where, value)
    if summary is None:
        return None
    for name, v in summary.items():
        if name == "n":
            _integer(f"{where}.n", v, low=0)
        else:
            _number(f"{where}.{name}", v, low=None)
    if "median" not in summary or not _is_number(summary["median"]) or summary["median"] <= 0:
        raise _Bad(f"{where}.median", f"expected a latency > 0, got {_describe(summary.get('median'))}")
    if "iqr" in summary:
        _number(f"{where}.iqr", summary["iqr"])
    return summary


def _attempt(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a mapping, got {_describe(value)}")
    _integer(f"{where}.batch_size", value.get("batch_size"), low=1, optional=False)
    _status(f"{where}.status", value.get("status"))
    return freeze(value)


def _memory(where: str, value: Any) -> Mapping[str, Any] | None:
    memory = _mapping(where, value)
    if memory is None:
        return None
    for name, v in memory.items():
        if name.endswith("_bytes") and v is not None and not (_is_number(v) and v >= -(2**62)):
            raise _Bad(f"{where}.{name}", f"expected a number of bytes, got {_describe(thaw(v))}")
    return memory


def _parity(where: str, value: Any) -> Mapping[str, Any] | None:
    parity = _mapping(where, value)
    if parity is not None:
        _boolean(f"{where}.ok", parity.get("ok"))
        _section_text(f"{where}.reason", parity.get("reason"))
        for name in ("max_abs_err", "max_rel_err", "tolerance", "top1_agreement"):
            _number(f"{where}.{name}", parity.get(name), low=None)
    return parity


# -- the sections added by later features: declared keys typed, ranged, and sized -----------------
# Each section is a mapping whose declared keys have a kind; keys this version does not declare
# are kept as written (a newer writer's), but the section as a whole is bounded in size.
MAX_SECTION_KEYS = 256
MAX_SECTION_TEXT = 4096  # characters of one string in a section (a reason, a method, a name)


def _section_text(where: str, value: Any) -> str | None:
    text = _string(where, value)
    if text is not None and len(text) > MAX_SECTION_TEXT:
        raise _Bad(where, f"a string of {len(text):,} characters (at most {MAX_SECTION_TEXT:,})")
    return text


def _section_number(where: str, value: Any, low: float | None = 0.0, high: float | None = None) -> Any:
    number = _number(where, value, low=low)
    if number is not None and high is not None and number > high:
        raise _Bad(where, f"expected a number <= {high:g}, got {number!r}")
    return number


_KINDS: dict[str, Callable[[str, Any], Any]] = {
    "bool": lambda w, v: _boolean(w, v),
    "text": _section_text,
    "num": lambda w, v: _section_number(w, v, low=None),
    "num+": lambda w, v: _section_number(w, v),
    "share": lambda w, v: _section_number(w, v, high=1.0),
    "percent": lambda w, v: _section_number(w, v, high=100.0),
    "int+": lambda w, v: _integer(w, v),
    "map": lambda w, v: _mapping(w, v),
    "texts": lambda w, v: None if v is None else _list(w, v, _section_text),
    "nums+": lambda w, v: None if v is None else _list(w, v, lambda w2, v2: _section_number(w2, v2, low=0.0) if v2 is not None else None),
    "maps": lambda w, v: None if v is None else _list(w, v, lambda w2, v2: _mapping(w2, v2, optional=False)),
    "summary": lambda w, v: _section(w, v, {"median": "num+", "min": "num+", "max": "num+"}),
    "shares": lambda w, v: _section(w, v, {"h2d": "share", "compute": "share", "d2h": "share"}),
    "label": lambda w, v: _section(w, v, {"label": "text"}),
}

_SECTIONS: dict[str, dict[str, str]] = {
    "energy": {
        "available": "bool", "method": "text", "scope": "text", "reason": "text", "joules": "num+",
        "window_s": "num+", "seconds": "num+", "images": "int+", "j_per_image": "num+", "avg_w": "num+",
        "images_per_j": "num+", "interval_s": "num+", "idle_w": "num+", "idle_s": "num+", "reliable": "bool",
        "unreliable_reason": "text", "idle_reason": "text", "above_idle_j_per_image": "num+",
        "repeat_j_per_image": "nums+", "samples": "int+", "achieved_interval_s": "num+", "domains": "map",
    },
    "device_state": {
        "cpu": "map", "gpu": "map", "throttled": "bool", "throttle_reasons": "texts",
        "other_gpu_processes": "maps", "repeats": "int+",
    },
    "transfer": {
        "applicable": "bool", "reason": "text", "h2d_ms": "summary", "compute_ms": "summary", "d2h_ms": "summary",
        "total_ms": "summary", "share": "shares", "calls": "int+", "timer": "text", "seconds": "num+",
    },
    "processes": {
        "statistic": "text", "n": "int+", "figures_ms": "nums+", "median_ms": "num+", "min_ms": "num+",
        "max_ms": "num+", "cv": "num+", "ci_low_ms": "num+", "ci_high_ms": "num+", "ci_coverage": "share",
        "modes": "maps",
    },
    "published": {
        "acc@1": "percent", "acc@5": "percent", "dataset": "text", "weights": "text", "source": "text",
        "accuracy_img_size": "int+",
    },
    "backend_info": {"calibration": "label"},
    "measured_on": {
        "hostname": "text", "machine_fingerprint": "text", "source": "text", "environment": "int+",
    },
}  # fmt: skip


def _section(where: str, value: Any, schema: Mapping[str, str]) -> Mapping[str, Any] | None:
    """A mapping whose declared keys are checked by kind; undeclared keys are kept as written."""
    section = _mapping(where, value)
    if section is None:
        return None
    if len(section) > MAX_SECTION_KEYS:
        raise _Bad(where, f"a mapping of {len(section):,} keys (at most {MAX_SECTION_KEYS})")
    for name, kind in schema.items():
        if name in section:
            _KINDS[kind](f"{where}.{name}", thaw(section[name]))
    return section


def _typed_section(name: str) -> Callable[[str, Any], Any]:
    return lambda where, value: _section(where, value, _SECTIONS[name])


# Run fields with a declared type; a run's other fields are kept as written.
_RUN_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "status": _status,
    "error": lambda w, v: _string(w, v),
    "samples_ms": lambda w, v: _list(w, v, _latency),
    "warmup_ms": lambda w, v: _list(w, v, _duration),
    "median_ms": lambda w, v: _number(w, v, strict=True),
    "first_call_ms": lambda w, v: _number(w, v),
    "block_size": lambda w, v: _integer(w, v, low=1),
    "batch_size": lambda w, v: _integer(w, v, low=1),
    "duration_s": lambda w, v: _number(w, v),
    "memory": _memory,
}


def _run(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a mapping, got {_describe(value)}")
    _status(f"{where}.status", value.get("status"))
    for name, check in _RUN_FIELDS.items():
        if name in value:
            check(f"{where}.{name}", value[name])
    return freeze(value)


def _scalars(where: str, value: Any) -> tuple[Any, ...]:
    return _list(where, value, lambda w, v: _text(w, v))


# Per-case fields: name -> (check, default when absent), in the writer's order (build_record).
_CASE_FIELDS: dict[str, tuple[Callable[[str, Any], Any], Any]] = {
    "key": (lambda w, v: _string(w, v, optional=False, nonempty=True), ...),
    "spec": (_spec, ...),
    "status": (_status, ...),
    "error": (lambda w, v: _string(w, v), None),
    "params": (lambda w, v: _integer(w, v), None),
    "trainable_params": (lambda w, v: _integer(w, v), None),
    "gmacs": (lambda w, v: _number(w, v), None),
    "gflops": (lambda w, v: _number(w, v), None),
    "gmacs_per_image": (lambda w, v: _number(w, v), None),
    "counter": (lambda w, v: _string(w, v), None),
    "counts": (_mapping, None),
    "aux_heads_included": (lambda w, v: _boolean(w, v), None),
    "backend_info": (_typed_section("backend_info"), None),
    "published": (_typed_section("published"), None),
    "parity": (_parity, None),
    "memory": (_memory, None),
    "accuracy": (_mapping, None),
    "train": (_mapping, None),
    "first_call_ms": (lambda w, v: _number(w, v), None),
    "warmup_ms": (lambda w, v: _list(w, v, _duration, optional=True), ()),
    "samples_ms": (lambda w, v: _list(w, v, _latency, optional=True), ()),
    "block_size": (lambda w, v: _integer(w, v, low=1), None),
    "stop_reason": (lambda w, v: _string(w, v), None),
    "repeat_medians_ms": (lambda w, v: _list(w, v, _latency, optional=True), ()),
    "measured_batch_size": (lambda w, v: _integer(w, v, low=1), None),
    "batch_attempts": (lambda w, v: _list(w, v, _attempt, optional=True), ()),
    "repeats_done": (lambda w, v: _integer(w, v), None),
    "repeats_planned": (lambda w, v: _integer(w, v), None),
    "runs": (lambda w, v: _list(w, v, _run, optional=True), ()),
    # Optional sections of later features, absent from files that predate them (and from records
    # that never measured them); each typed like the older fields (`_typed_section`).
    "energy": (_typed_section("energy"), None),  # over the timed window (cnnbench.measure.energy)
    "device_state": (_typed_section("device_state"), None),  # GPU clocks, throttling; CPU governor (cnnbench.measure.devicestate)
    "transfer": (_typed_section("transfer"), None),  # H2D / compute / D2H split (cnnbench.backends.transfer)
    "processes": (_typed_section("processes"), None),  # between-process figures and modes (cnnbench.stats.processes)
    "latency_ms": (_latency_summary, None),
    "throughput_per_s": (lambda w, v: _number(w, v, strict=True), None),
    "warnings": (lambda w, v: _scalars(w, v) if v is not None else (), ()),
    "measured_on": (_typed_section("measured_on"), None),  # written by `merge` (cnnbench.run.merge), never by build_record
}
# The record's fields in the order `cnnbench.results.format.build_record` writes them: the writer's
# dict comes from that one function, and this table mirrors it field for field (a field the writer
# adds must be declared here, or it would be read back as an undeclared `extra`);
# tests/test_records.py::test_build_record_writes_exactly_the_declared_fields checks both ways.
CASE_FIELDS: tuple[str, ...] = tuple(_CASE_FIELDS)


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One case of a results file, checked and read-only.

    Declared fields are typed (mappings are read-only views, lists tuples). `present` names the
    fields the file really had, so `to_json` writes back exactly what was read; `extra` holds
    the keys this version does not declare, as written.
    """

    key: str
    spec: CaseSpecView
    status: str
    error: str | None
    params: int | None
    trainable_params: int | None
    gmacs: float | None
    gflops: float | None
    gmacs_per_image: float | None
    counter: str | None
    counts: Mapping[str, Any] | None
    aux_heads_included: bool | None
    backend_info: Mapping[str, Any] | None
    published: Mapping[str, Any] | None
    parity: Mapping[str, Any] | None
    memory: Mapping[str, Any] | None
    accuracy: Mapping[str, Any] | None
    train: Mapping[str, Any] | None
    first_call_ms: float | None
    warmup_ms: tuple[float, ...]
    samples_ms: tuple[float, ...]
    block_size: int | None
    stop_reason: str | None
    repeat_medians_ms: tuple[float, ...]
    measured_batch_size: int | None
    batch_attempts: tuple[Mapping[str, Any], ...]
    repeats_done: int | None
    repeats_planned: int | None
    runs: tuple[Mapping[str, Any], ...]
    latency_ms: Mapping[str, Any] | None
    throughput_per_s: float | None
    warnings: tuple[str, ...]
    measured_on: Mapping[str, Any] | None
    processes: Mapping[str, Any] | None
    energy: Mapping[str, Any] | None
    device_state: Mapping[str, Any] | None
    transfer: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    present: tuple[str, ...]

    # -- one place per decision ----------------------------------------------------------

    @property
    def invalid_reason(self) -> str | None:
        """Why this case's timing is not a result, None when it is: a status other than ok, no
        timed samples, or a failed parity check (its timings stay in the file, shown invalid)."""
        if self.status != "ok":
            return self.status
        if not self.latency_ms or not _is_number(self.latency_ms.get("median")) or self.latency_ms["median"] <= 0:
            return "no timed samples"
        if self.parity is not None and self.parity.get("ok") is False:
            return "parity failed"
        return None

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

    @property
    def median_ms(self) -> float | None:
        """The per-call median over every timed sample, for a valid case only."""
        return float(self.latency_ms["median"]) if self.valid and self.latency_ms else None

    @property
    def iqr_ms(self) -> float | None:
        if not self.valid or not self.latency_ms or not _is_number(self.latency_ms.get("iqr")):
            return None
        return float(self.latency_ms["iqr"])

    @property
    def dispersion(self) -> float | None:
        """IQR relative to the median (the 10% warning's figure)."""
        med, iqr = self.median_ms, self.iqr_ms
        return iqr / med if med and iqr is not None else None

    @property
    def batch(self) -> int:
        """The batch actually timed (lower than the spec's only after --oom-retry)."""
        return self.measured_batch_size or self.spec.batch_size

    @property
    def batch_label(self) -> str:
        """"16 (of 32)" when --oom-retry lowered the batch, else "32"."""
        if self.measured_batch_size is not None and self.measured_batch_size != self.spec.batch_size:
            return f"{self.measured_batch_size} (of {self.spec.batch_size})"
        return str(self.spec.batch_size)

    @property
    def throughput(self) -> float | None:
        """Images (training: samples) per second at the batch timed, for a valid case."""
        med = self.median_ms
        if med is None:
            return None
        if self.throughput_per_s is not None:
            return float(self.throughput_per_s)
        return self.batch / (med / 1000.0)

    @property
    def backend_label(self) -> str:
        return backend_label(self.spec.backend, self.spec.options)

    @property
    def is_train(self) -> bool:
        return self.spec.mode == "train"

    def epoch_seconds(self, images: int) -> float | None:
        """Seconds of one training epoch of `images` images at this training case's median step
        latency: ceil(images / batch) steps at the batch actually timed (an --oom-retry case is not
        billed at the batch it could not run), the last partial batch billed as a full one, data
        loading excluded. None for an inference case or one without a median."""
        if not self.is_train or not self.median_ms or images <= 0:
            return None
        return math.ceil(images / self.batch) * self.median_ms / 1000.0

    @property
    def optimizer(self) -> str | None:
        """A training case's optimizer ("sgd", "adamw"): the `train` block's `optimizer.name`,
        else `backend_info.optimizer`, else the backend option, else SGD; None for inference."""
        if not self.is_train:
            return None
        for opt in ((self.train or {}).get("optimizer"), (self.backend_info or {}).get("optimizer")):
            if isinstance(opt, Mapping) and opt.get("name"):
                return str(opt["name"])
            if isinstance(opt, str) and opt:
                return opt
        return str(self.spec.options.get("optimizer") or "sgd")

    @property
    def speedup_group(self) -> tuple[Any, ...]:
        """The cases a speedup over eager is taken within: everything that changes what is
        computed except the backend, at the batch actually timed (an --oom-retry case meets eager
        at the batch it ran) and, for a training step, the optimizer (another optimizer is
        another computation, not a faster backend)."""
        s = self.spec
        return (
            s.model, s.mode, s.precision, self.batch, tuple(s.input_size), s.device, s.threads,
            s.channels_last, tuple(sorted((k, repr(v)) for k, v in s.model_kwargs.items())), self.optimizer,
        )

    @property
    def is_eager_baseline(self) -> bool:
        """Eager with no options (a training step: no option but its optimizer)."""
        if self.spec.backend != "eager":
            return False
        extra = set(self.spec.options) - ({"optimizer"} if self.is_train else set())
        return not extra

    @property
    def setup(self) -> tuple[float | None, str | None]:
        return setup_time(self.backend_info or {}, self.first_call_ms)

    @property
    def cold_start_ms(self) -> float | None:
        return cold_start_ms(self.backend_info or {}, self.first_call_ms)

    @property
    def measured_accuracy(self) -> Mapping[str, Any] | None:
        """The case's own measured accuracy, if it was measured."""
        acc = self.accuracy
        if acc and acc.get("kind", "measured") == "measured" and _is_number(acc.get("top1")):
            return acc
        return None

    @property
    def parity_failed(self) -> bool:
        """The backend's outputs failed the parity check (its timings are kept, not valid)."""
        return self.status == "fail_accuracy" or (self.parity is not None and self.parity.get("ok") is False)

    @property
    def repeat_medians(self) -> tuple[float, ...]:
        """Each worker process's median (what the file keeps per repeat); a record with pooled
        samples only counts as one process."""
        if self.repeat_medians_ms:
            return tuple(float(m) for m in self.repeat_medians_ms)
        if self.samples_ms:

            return (stats.median(self.samples_ms),)
        return ()

    def per_process(self, q: float | None) -> list[float] | None:
        """One figure per worker process, for compare: the q-th percentile of that process's own
        samples (q None: the repeat medians). A record without per-run samples but with pooled
        ones counts as one process; None when the record keeps only `repeat_medians_ms`, so the
        percentile cannot be computed."""
        if q is None:
            return list(self.repeat_medians)

        runs = [r for r in self.runs if r.get("status") == "ok" and r.get("samples_ms")]
        if runs:
            return [stats.percentile([float(x) for x in r["samples_ms"]], q) for r in runs]
        if self.samples_ms:
            return [stats.percentile(list(self.samples_ms), q)]
        return None if self.repeat_medians_ms else []

    @property
    def single_run_samples(self) -> list[float]:
        """The samples of a single-process side, sorted: its one ok run's, else the pooled ones."""
        ok_runs = [r for r in self.runs if r.get("status") == "ok" and r.get("samples_ms")]
        samples = ok_runs[0]["samples_ms"] if len(ok_runs) == 1 else self.samples_ms
        return sorted(float(x) for x in samples)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, exactly as it was read (declared fields in the writer's order)."""
        out: dict[str, Any] = {}
        for name in self.present:
            if name in _CASE_FIELDS:
                value = self.spec.raw if name == "spec" else getattr(self, name)
                out[name] = thaw(value)
            else:
                out[name] = thaw(self.extra[name])
        return out


def backend_label(backend: str, options: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> str:
    """"compile[mode=max-autotune]": the backend and its options, sorted (the key's spelling)."""
    pairs = sorted(options.items() if isinstance(options, Mapping) else options)
    return backend + ("[" + ",".join(f"{k}={v}" for k, v in pairs) + "]" if pairs else "")


def setup_time(backend_info: Mapping[str, Any], first_call_ms: float | None) -> tuple[float | None, str | None]:
    """What a backend costs once before it can run, apart from every timed figure: `(ms, how)`.

    compile: inductor compiles during the first call, so it is `first_call_ms`. onnxrt: the
    export and the session are made in `prepare`, before the first call, so it is
    `backend_info.export_ms` (the time of the export that made the file, also when this run
    reused the cached file, which `how` then says) plus `session_create_ms`. eager: nothing to
    set up, (None, None).
    """
    info = backend_info if isinstance(backend_info, Mapping) else {}
    if info.get("compile_in_first_call"):
        return (float(first_call_ms), "compile (first call)") if _is_number(first_call_ms) else (None, None)
    export, session = info.get("export_ms"), info.get("session_create_ms")
    if _is_number(export):
        how = "export (cached, made earlier) + session" if info.get("export_cached") else "export + session"
        return float(export) + (float(session) if _is_number(session) else 0.0), how
    return None, None


def cold_start_ms(backend_info: Mapping[str, Any], first_call_ms: float | None) -> float | None:
    """Time before the first warmup call could start: the first call, plus what the backend set
    up before it (`setup_time`) unless that set-up *is* the first call (torch.compile). An
    export reused from the cache counts the time of the export that made it, so the figure does
    not depend on the state of a cache."""
    if not _is_number(first_call_ms):
        return None
    info = backend_info if isinstance(backend_info, Mapping) else {}
    if info.get("compile_in_first_call"):
        return float(first_call_ms)  # type: ignore[arg-type]
    setup, _ = setup_time(info, first_call_ms)
    return float(first_call_ms) + (setup or 0.0)  # type: ignore[arg-type]


def speedups_over_eager(
    records: Sequence[CaseRecord], *, scope: Callable[[int], Any] | None = None
) -> list[float | None]:
    """Speedup of each record over its matching eager baseline: eager median / its median.

    The one rule for the terminal table and the report: same `scope` (the report passes each
    row's environment; one file is one scope), same `speedup_group`, baseline `is_eager_baseline`
    and valid. The baseline itself gets 1.0; a record with no valid baseline, or invalid, None.
    """
    where = scope or (lambda i: None)
    eager: dict[tuple[Any, ...], float] = {}
    for i, rec in enumerate(records):
        if rec.is_eager_baseline and rec.median_ms:
            eager.setdefault((where(i), rec.speedup_group), rec.median_ms)
    out: list[float | None] = []
    for i, rec in enumerate(records):
        ref = eager.get((where(i), rec.speedup_group))
        med = rec.median_ms
        out.append(ref / med if ref and med and (rec.spec.backend != "eager" or rec.is_eager_baseline) else None)
    return out


@dataclass(frozen=True, slots=True)
class ResultsFile:
    """A results file, checked: the only thing commands read after loading."""

    path: str
    schema_version: int
    tool: str | None
    created: str | None
    updated: str | None
    environment: Mapping[str, Any]
    suite: Mapping[str, Any]
    cases: tuple[CaseRecord, ...]
    environments: tuple[Mapping[str, Any], ...] | None  # a merged file's per-machine environments
    notes: tuple[str, ...]
    extra: Mapping[str, Any]
    present: tuple[str, ...]

    def __iter__(self) -> Iterator[CaseRecord]:
        return iter(self.cases)

    def environment_of(self, record: CaseRecord) -> Mapping[str, Any]:
        """The environment a case was measured in: a merged file's `environments[measured_on.
        environment]`, else the file's own."""
        index = (record.measured_on or {}).get("environment")
        envs = self.environments or ()
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(envs):
            return envs[index]
        return self.environment

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per case, the columns of `to_pandas` (`cnnbench.results.frame`)."""
        return frame.case_rows(self.cases, speedups_over_eager(self.cases))

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per case: the key's fields, status, latency statistics
        (`latency_<stat>_ms`), throughput, counts, memory, accuracy, energy and scenario figures
        when present; units in the column names. pandas is an optional extra (`cnnbench[pandas]`).

        Example:
            >>> df = cnnbench.load("results/smoke.json").to_pandas()
            >>> df[["model", "backend", "batch_size", "median_ms"]]
        """
        return frame.to_pandas(self.rows())

    def _repr_html_(self) -> str:
        """The terminal's table and notes, for a notebook."""
        title = f"cnnbench: {self.suite.get('name') or self.path}"
        return frame.results_html(self.cases, speedups_over_eager(self.cases), title=title)

    def to_json(self) -> dict[str, Any]:
        """The file as JSON, exactly as it was read (after migration)."""
        out: dict[str, Any] = {}
        for name in self.present:
            if name == "cases":
                out[name] = [c.to_json() for c in self.cases]
            elif name in _TOP_FIELDS:
                out[name] = thaw(getattr(self, name))
            else:
                out[name] = thaw(self.extra[name])
        return out


_TOP_FIELDS = ("schema_version", "tool", "created", "updated", "environment", "suite", "cases", "environments", "notes")


def parse_record(value: Any, *, index: int = 0) -> CaseRecord:
    """One case record, checked. Raises `_Bad` (caught by `parse_results`) naming the field."""
    where = f"case {index}"
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a mapping (a case record), got {_describe(value)}")
    key = value.get("key")
    if isinstance(key, str) and key:
        where = f"case {index} ({_short(key, 80)})"
    fields: dict[str, Any] = {}
    try:
        for name, (check, default) in _CASE_FIELDS.items():
            if name in value:
                fields[name] = check(name, value[name])
            elif default is ...:
                raise _Bad(name, "missing")
            else:
                fields[name] = default
    except _Bad as exc:
        raise _Bad(f"{where}: {exc.where}", exc.message) from None
    extra = {k: freeze(v) for k, v in value.items() if k not in _CASE_FIELDS}
    return CaseRecord(**fields, extra=MappingProxyType(extra), present=tuple(value))


def checked_record(value: Any, *, where: str) -> CaseRecord:
    """`parse_record` for a record that comes from elsewhere than a results file (the history
    store): a field that fails its check is a ResultsFileError naming `where` and the field."""
    try:
        return parse_record(value)
    except _Bad as exc:
        raise ResultsFileError(where, f"{exc.where}: {exc.message}") from None


def parse_results(data: Any, *, path: str = "results file") -> ResultsFile:
    """A parsed JSON value (already migrated to this schema) as a checked `ResultsFile`."""
    try:
        if not isinstance(data, dict):
            raise _Bad("", f"expected a mapping at the top level, got {_describe(data)}")
        version = _integer("schema_version", data.get("schema_version"), low=1, optional=False)
        cases_raw = data.get("cases")
        if not isinstance(cases_raw, list):
            raise _Bad("cases", f"expected a list of case records, got {_describe(cases_raw)}")
        environments = None
        if "environments" in data:
            environments = _list("environments", data["environments"], lambda w, v: _mapping(w, v, optional=False))
        return ResultsFile(
            path=path,
            schema_version=version,  # type: ignore[arg-type]
            tool=_string("tool", data.get("tool")),
            created=_string("created", data.get("created")),
            updated=_string("updated", data.get("updated")),
            environment=_mapping("environment", data.get("environment")) or MappingProxyType({}),
            suite=_mapping("suite", data.get("suite")) or MappingProxyType({}),
            cases=tuple(parse_record(c, index=i) for i, c in enumerate(cases_raw)),
            environments=environments,
            notes=_scalars("notes", data["notes"]) if data.get("notes") is not None else (),
            extra=MappingProxyType({k: freeze(v) for k, v in data.items() if k not in _TOP_FIELDS}),
            present=tuple(data),
        )
    except _Bad as exc:
        raise ResultsFileError(path, f"{exc.where}: {exc.message}" if exc.where else exc.message) from None


def from_dict(results: "ResultsFile | dict[str, Any]", *, path: str = "(in memory)") -> ResultsFile:
    """A checked `ResultsFile` from one already loaded or built in memory: a results dict is
    migrated (one without `schema_version` is taken as this version's) and checked."""
    if isinstance(results, ResultsFile):
        return results
    if isinstance(results, dict) and "schema_version" not in results:
        results = {"schema_version": SCHEMA_VERSION, **results}
    return parse_results(migrate(results, path), path=path)


def load(path: str | os.PathLike[str]) -> ResultsFile:
    """Read, migrate and check a results file (`cnnbench.results.format.load_results` does the same
    and returns plain JSON). ResultsFileError, one line, when it cannot be used."""
    name = os.fspath(path)
    return parse_results(migrate(read_json(name), name), path=name)
