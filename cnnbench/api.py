"""The Python API: benchmark from a notebook or a script, get typed results and DataFrames back.

Every measurement still happens in worker processes, one per case and repeat, exactly as
`bench.py run` does (it is the same code: each function here builds the command's arguments and
calls it). A model object (`nn.Module`, or a class / zero-argument function that builds one,
defined anywhere, a notebook's `__main__` included) is serialized with cloudpickle into the
run's directory and loaded only in the worker (`cnnbench.models.pickled`); its code never runs in
the calling process beyond what the caller already ran.

Errors are the typed exceptions the command line turns into its exit codes (`UserError` and its
subclasses: exit 2, with the same message), never `SystemExit`. `import cnnbench` stays free of
torch: torch is imported by the workers, and in this process only by `profile`. docs/api.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cnnbench import cli
from cnnbench import compare as comparing
from cnnbench.compare.verdicts import Comparison
from cnnbench.core.errors import UserError
from cnnbench.core.safeio import atomic_write
from cnnbench.models.catalog import MODELS
from cnnbench.models.pickled import ModelPickleError, dump_model, module_text
from cnnbench.results.records import ResultsFile
from cnnbench.results.records import load as load_results

__all__ = ["ResultsFile", "Comparison", "UserError", "ModelPickleError", "measure", "run", "load", "compare", "profile"]

_PICKLED_MODULE = "cnnbench_user_model"  # the generated module beside the pickle (models.pickled)
_LABEL_RE = re.compile(r"[^A-Za-z0-9_.\-]+")

InputSize = int | str | Sequence[int]


class LineReporter:
    """Progress as one plain line per finished worker run: readable in a notebook's output cell
    and in a log, where a live terminal display would be redrawn line after line."""

    def __init__(self, stream: Any = None):
        self.stream = stream
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def start(self, total_runs: int) -> None:
        self.total = total_runs
        self._print(f"cnnbench: {total_runs} worker run(s)")

    def case_started(self, spec: Any, repeat: int) -> None: ...

    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None:
        self.done += 1
        status = run.get("status")
        median = run.get("median_ms") or (record.get("latency_ms") or {}).get("median")
        shown = f"{median:.3f} ms median" if status == "ok" and isinstance(median, (int, float)) else f"{status}: {run.get('error') or ''}"
        mark = "✓" if status == "ok" else "✗"
        self._print(f"[{self.done}/{self.total}] {mark} {record.get('key')}: {shown}")

    def finish(self, results: dict[str, Any]) -> None: ...


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, int, float)) or value is None:
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise UserError(f"{what} must be a value or a list of values, got {type(value).__name__}")


def _size(value: InputSize) -> Any:
    """An input size as a suite writes it (the suite's grammar: 224, "3x224x224", [3, 224, 224])."""
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, Sequence):
        return list(value)
    raise UserError(f"input_size must be an int, a 'CxHxW' string or a (C, H, W) sequence, got {type(value).__name__}")


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module exists only where torch was imported already
    return torch is not None and isinstance(obj, torch.nn.Module)


def _label(model: Any, name: str | None) -> str:
    if name:
        return name
    base = model.__name__ if inspect.isclass(model) or inspect.isfunction(model) else type(model).__name__
    base = _LABEL_RE.sub("_", str(base)).strip("._-") or "model"
    return f"{base}_user" if base in MODELS else base  # a registry name would be refused by the suite


def _check_builder(model: Any) -> None:
    if _is_module(model):
        return
    if not callable(model):
        raise UserError(
            f"model must be a registry name, a 'package.module:callable' path, an nn.Module, or a zero-argument "
            f"callable that builds one; got {type(model).__name__}"
        )
    try:
        inspect.signature(model).bind()
    except TypeError as exc:
        raise UserError(f"model {_label(model, None)!r} must be callable with no arguments to build the model: {exc}") from None
    except ValueError:  # a builtin without a signature: leave it to the worker
        pass


def _pickled_model_entry(model: Any, run_dir: Path, *, name: str | None, input_size: Any) -> dict[str, Any]:
    _check_builder(model)
    dump_model(model, run_dir)
    atomic_write(run_dir / f"{_PICKLED_MODULE}.py", module_text())
    return {"name": _label(model, name), "import": f"{_PICKLED_MODULE}:build", "input_size": input_size}


def measure(
    model: Any,
    *,
    input_size: InputSize | None = None,
    batch_sizes: int | Sequence[int] = (1,),
    backends: str | Sequence[str] = ("eager",),
    precisions: str | Sequence[str] = ("fp32",),
    threads: int | Sequence[int] | None = None,
    measure: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    progress: bool | None = None,
    peak: bool = False,
    replace: bool = False,
) -> ResultsFile:
    """Measure one model over a matrix of batch sizes, backends and precisions, each case in its
    own worker process, and return the results file.

    Args:
        model: a registry name (`"resnet18"`, `"timm:..."`), a `"package.module:callable"` path, an
            `nn.Module`, or a class / zero-argument function that builds one, defined anywhere (a
            notebook's `__main__` included). Objects are pickled with cloudpickle into the run's
            directory and loaded only in the worker.
        input_size: per-image size, as a suite writes it: `224`, `"3x224x224"`, `(3, 224, 224)`;
            required for a model object (the registry's default otherwise).
        batch_sizes, backends, precisions: the matrix axes (`bench.py list backends`).
        threads: CPU threads per case (an axis when a list); None: the cores this process may use.
        measure: per-case measure settings (`warmup`, `min_time_s`, `max_time_s`, `repeats`,
            `timeout_s`, ...: docs/suites.md).
        out: the results file; default `results/<label>-<time>.json`. The suite and the pickled
            model are kept beside it, in `<out>.run/`.
        name: the model's label in the results (default: its class or function name).
        progress: print a line per finished worker (default: in a notebook, lines; in a terminal,
            the live table of `bench.py run`); False prints only the final summary.
        peak: also measure the machine's peak GFLOP/s (one more worker, ~6 s).
        replace: overwrite `out` if it exists.

    Returns:
        The results, loaded and checked (`ResultsFile`; `.to_pandas()` for a DataFrame).

    Raises:
        UserError: an invalid argument or suite (the message `bench.py run` prints, exit 2 there);
            `ModelPickleError` when the model object cannot be serialized.

    Example:
        >>> import cnnbench
        >>> res = cnnbench.measure("lenet5", batch_sizes=[1, 8], backends=["eager", "onnxrt"],
        ...                        measure={"repeats": 1, "max_time_s": 0.5})
        >>> res.to_pandas()[["backend", "batch_size", "median_ms"]]
    """
    if isinstance(model, str):
        label = _LABEL_RE.sub("_", model.replace(":", "_")).strip("._-") or "model"
    else:
        _check_builder(model)
        label = _label(model, name)
        if input_size is None:
            raise UserError(f"input_size is required for a model object ({label!r}), e.g. input_size=(3, 32, 32)")
    out_path = Path(out) if out is not None else Path("results") / f"{label}-{_stamp()}.json"
    run_dir = out_path.with_name(out_path.name + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    size = _size(input_size) if input_size is not None else None
    if isinstance(model, str):
        entry: Any = model  # a registry name, a glob, or "package.module:callable", as a suite writes it
        if size is not None or name is not None:
            is_import = ":" in model and not model.startswith("timm:")
            entry = {"name": name or label, "import": model} if is_import else {"name": model}
            if size is not None:
                entry["input_size"] = size
    else:
        entry = _pickled_model_entry(model, run_dir, name=name, input_size=size)
    matrix: dict[str, Any] = {
        "models": [entry],
        "batch_sizes": _list(batch_sizes, "batch_sizes"),
        "backends": _list(backends, "backends"),
        "precisions": _list(precisions, "precisions"),
        "device": "auto",
    }
    if threads is not None:
        matrix["threads"] = _list(threads, "threads") if not isinstance(threads, int) else threads
    if measure:
        matrix["measure"] = dict(measure)
    suite = {"name": _LABEL_RE.sub("_", label) or "measure", "description": "cnnbench.measure()", **matrix}
    return run(suite, out=out_path, suite_dir=run_dir, progress=progress, peak=peak, replace=replace)


def _write_suite(suite: Mapping[str, Any], directory: Path) -> Path:
    import yaml  # a suite given as a mapping is written as the file `bench.py run` reads

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "suite.yaml"
    atomic_write(path, yaml.safe_dump(dict(suite), sort_keys=False))
    return path


def run(
    suite: str | os.PathLike[str] | Mapping[str, Any],
    *,
    out: str | os.PathLike[str] | None = None,
    replace: bool = False,
    resume: bool = False,
    models: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    repeats: int | None = None,
    timeout_s: float | None = None,
    max_time_s: float | None = None,
    oom_retry: bool = False,
    peak: bool = True,
    progress: bool | None = None,
    suite_dir: str | os.PathLike[str] | None = None,
) -> ResultsFile:
    """Run a suite, as `bench.py run SUITE` does, and return its results.

    Args:
        suite: a suite file, or the suite as a mapping (the YAML schema; written to
            `<suite_dir or <out>.run>/suite.yaml` so the run is reproducible from the command line).
        out: the results file (default `results/<suite>-<time>.json`).
        replace, resume: as `--replace` / `--resume`.
        models, backends: only these models (globs) / backends (`--models`, `--backends`).
        repeats, timeout_s, max_time_s: override the suite (`--repeats`, `--timeout`, `--max-time`).
        oom_retry: as `--oom-retry`.
        peak: measure the machine's peak GFLOP/s first (`--no-peak` when False).
        progress: as in `measure`.
        suite_dir: where a mapping suite is written.

    Returns:
        The results file, loaded (whatever the cases' statuses: a failed case is data).

    Raises:
        UserError: a bad suite, option or results path: the message `bench.py run` prints.

    Example:
        >>> res = cnnbench.run("suites/smoke.yaml", models=["lenet5"], repeats=1)
        >>> res.to_pandas().groupby("backend")["median_ms"].median()
    """
    if isinstance(suite, Mapping):
        stem = str(suite.get("name") or "suite")
        out_path = Path(out) if out is not None else Path("results") / f"{stem}-{_stamp()}.json"
        directory = Path(suite_dir) if suite_dir is not None else out_path.with_name(out_path.name + ".run")
        suite_path = _write_suite(suite, directory)
    else:
        suite_path = Path(suite)
        out_path = Path(out) if out is not None else Path("results") / f"{suite_path.stem}-{_stamp()}.json"
    argv = ["run", str(suite_path), "--out", str(out_path)]
    argv += ["--replace"] if replace else []
    argv += ["--resume"] if resume else []
    argv += ["--oom-retry"] if oom_retry else []
    argv += [] if peak else ["--no-peak"]
    for flag, values in (("--models", models), ("--backends", backends)):
        for v in values or ():
            argv += [flag, str(v)]
    for flag, value in (("--repeats", repeats), ("--timeout", timeout_s), ("--max-time", max_time_s)):
        if value is not None:
            argv += [flag, str(value)]
    show_lines = _in_notebook() if progress is None else progress
    if progress is False:
        argv.append("--quiet")
    args = _parse(argv)
    if show_lines:
        args.reporter = LineReporter()
    args._run(args)  # the exit code is in the results: every case's status
    return load_results(out_path)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = cli.build_parser(argv)  # only the command being run is imported
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error: already printed to stderr
        raise UserError(f"invalid options for {argv[0]}: {' '.join(argv[1:])}") from exc


def load(path: str | os.PathLike[str]) -> ResultsFile:
    """Load and check a results file (any schema version this cnnbench reads).

    Raises:
        ResultsFileError: the file is missing, damaged, or of a newer format (one line).

    Example:
        >>> res = cnnbench.load("results/smoke-20260101-120000.json")
        >>> res   # in a notebook: the table and its warnings
    """
    return load_results(path)


def compare(
    base: str | os.PathLike[str] | ResultsFile,
    current: str | os.PathLike[str] | ResultsFile,
    *,
    thresholds: Mapping[str, str | float] | Sequence[str] | None = None,
    alpha: float | None = None,
    statistic: str | None = None,
) -> Comparison:
    """Pair the cases of two results and decide, with statistics, whether anything regressed,
    as `bench.py compare BASE CURRENT` does.

    Args:
        base, current: results files or loaded `ResultsFile`s.
        thresholds: `{"latency": "5%", "memory": "10%"}` or `["latency:5%"]` (`--threshold`);
            default: the suite's, else latency 5%, memory 10%, energy 10%.
        alpha: significance level of each one-sided test (default 0.01).
        statistic: the per-process figure compared (`--statistic`).

    Returns:
        The `Comparison`: `.rows`, `.has_regression`, `.exit_code` (what `bench.py compare`
        would exit with), `.to_pandas()`.

    Example:
        >>> cmp = cnnbench.compare("results/base.json", "results/current.json")
        >>> cmp.exit_code, cmp.to_pandas()[["key", "verdict", "ratio"]]
    """
    parsed: dict[str, comparing.Threshold] = {}
    items: Iterable[str]
    if isinstance(thresholds, Mapping):
        items = [f"{metric}:{value}" for metric, value in thresholds.items()]
    else:
        items = [str(t) for t in thresholds or ()]
    for text in items:
        thr = comparing.parse_threshold(text, source="cnnbench.compare")
        parsed[thr.metric] = thr
    level = comparing.DEFAULT_ALPHA if alpha is None else float(alpha)
    if not 0 < level < 0.5:
        raise UserError(f"--alpha must be between 0 and 0.5, got {level:g}")
    statistic = statistic or comparing.DEFAULT_STATISTIC
    if statistic not in comparing.STATISTICS:
        raise UserError(f"--statistic must be one of {', '.join(comparing.STATISTICS)}, got {statistic!r}")
    b = base if isinstance(base, ResultsFile) else load_results(base)
    c = current if isinstance(current, ResultsFile) else load_results(current)
    return comparing.compare_results(
        b, c, alpha=level, thresholds=parsed, base_name=b.path, current_name=c.path, statistic=statistic
    )


def profile(
    model: str,
    *,
    input_size: InputSize | None = None,
    batch_size: int = 1,
    precision: str = "fp32",
    time: bool = False,
    runs: int = 5,
    source: str | None = None,
    json_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The per-layer table of one model (`bench.py profile MODEL`): output shapes, activations,
    parameters, MACs, receptive field, and with `time` the profiler-attributed time per layer.

    This one runs in the calling process (it imports torch): a registry model or a
    `package.module:callable` given as `source`.

    Returns:
        The profile as the JSON `bench.py profile --json` writes (a dict of rows and totals).

    Example:
        >>> prof = cnnbench.profile("lenet5", input_size="1x32x32")
        >>> prof["rows"][0]
    """
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cnnbench-profile-") as tmp:
        target = Path(json_path) if json_path is not None else Path(tmp) / "profile.json"
        argv = ["profile", model, "--batch-size", str(batch_size), "--precision", precision,
                "--runs", str(runs), "--json", str(target)]  # fmt: skip
        if input_size is not None:
            size = _size(input_size)
            argv += ["--input-size", "x".join(str(d) for d in size) if isinstance(size, list) else str(size)]
        if source is not None:
            argv += ["--source", source]
        if time:
            argv.append("--time")
        args = _parse(argv)
        args._run(args)
        return json.loads(target.read_text(encoding="utf-8"))
