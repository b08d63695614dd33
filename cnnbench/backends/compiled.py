"""torch.compile (TorchInductor), configured for inference the way an expert would.

Options (suite `options:` for backend `compile`, see `cnnbench.suite.BACKEND_OPTIONS`):

- `mode`: default | reduce-overhead | max-autotune, passed to `torch.compile`.
- `freezing` (default on): `torch._inductor.config.freezing`, which folds the weights into the
  graph as constants and lets inductor pre-pack them for oneDNN. On CPU it is what makes
  compiled inference fast (resnet18 b1 went from 1.28x slower than eager to 0.61x of eager's
  time with it). It only applies under `inference_mode`/`no_grad`, which is how we run.
- `dynamic` (default off): `torch.compile(dynamic=...)`; off means one graph specialised to
  the case's shapes, as a deployment would compile it.
- `cache`: where inductor keeps its on-disk caches (`TORCHINDUCTOR_CACHE_DIR`). `per-run`
  (default) is a fresh directory under the case's working directory, so the first call pays a
  cold compile and `first_call_ms` is an honest compile time; `shared` is a persistent
  directory (`$CNNBENCH_CACHE_DIR/inductor`, default `~/.cache/cnnbench/inductor`) and makes
  the first call a warm compile; any other value is a directory path used as is. The choice
  and the directory are recorded in `backend_info`.

Compilation is lazy: it happens in the first call, so the timing loop's `first_call_ms` *is*
the compile time (plus one forward), stored apart and never among the samples. Any compile
after that first call is a recompile (a guard failed): it is counted from dynamo's compilation
metrics, and a recompile seen during warmup or the timed samples becomes a warning on the case
with its guard-failure reason, since the samples around it are not steady-state.

A compile failure (e.g. an op inductor cannot lower) surfaces from the first call and ends the
case with status `error` and the exception's first line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnbench.backends import Prepared
from cnnbench.backends.common import check_device, check_precision, device_sync
from cnnbench.transfer import torch_transfer
from cnnbench.errors import CaseFailure

__all__ = ["BACKEND", "CompileFailed", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {"mode": "default", "freezing": True, "dynamic": False, "cache": "per-run"}


class CompileFailed(CaseFailure):
    """torch.compile could not compile the model (status `error`, the message says so)."""

    status = "error"


def _cache_dir(choice: str, workdir: str) -> Path:
    if choice == "per-run":
        return Path(workdir).resolve() / "inductor-cache"
    if choice == "shared":
        from cnnbench.counting import cache_dir

        return cache_dir() / "inductor"
    return Path(choice).expanduser().resolve()


def _first_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _compile_count() -> int:
    """How many frames dynamo has compiled so far in this process (first compile included)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def _metrics() -> list[Any]:
    from torch._dynamo.utils import get_compilation_metrics

    return list(get_compilation_metrics())


def _clear_metrics() -> None:
    from torch._dynamo.utils import clear_compilation_metrics

    clear_compilation_metrics()


def _graph_break_count() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


def _recompile_reasons() -> list[str]:
    """Guard-failure reasons of the compilations recorded since `_clear_metrics()`.

    Dynamo records one `CompilationMetrics` per compiled frame; a compile caused by a failed
    guard (a recompile) carries its `recompile_reason`, a first compile (including the extra
    frames a graph break creates) does not. The first call's compiles therefore never count,
    whatever the number of graph breaks. (Dynamo keeps the last 64 records: more recompiles
    than that in one case would be undercounted, and already flagged.)
    """
    reasons = []
    for m in _metrics():
        reason = getattr(m, "recompile_reason", None)
        if reason:
            reasons.append(" ".join(str(reason).split()))
    return reasons


def _compile_failure(exc: BaseException) -> BaseException:
    """A compile failure as `CompileFailed` with a useful first line; OOM passes through.

    Inductor's `BackendCompilerFailed` starts with "backend='inductor' raised:", so the line
    shown is the wrapped exception's.
    """
    from cnnbench.worker import classify_exception

    if classify_exception(exc) == "oom" or isinstance(exc, CaseFailure):
        return exc
    inner = getattr(exc, "inner_exception", None)
    shown = _first_line(inner) if isinstance(inner, BaseException) else _first_line(exc)
    return CompileFailed(f"torch.compile failed: {shown}")


class CompiledBackend:
    name = "compile"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import torch

        from cnnbench.backends.eager import amp_context

        check_device(spec.device)
        check_precision(spec.device, spec.precision)
        opts = {**DEFAULTS, **spec.option_dict}

        cache = _cache_dir(str(opts["cache"]), workdir)
        cache.mkdir(parents=True, exist_ok=True)
        # Read by inductor whenever it needs its cache directory; nothing has compiled yet in
        # this worker process, so every cache (FX graph, AOT autograd, kernels) lands here.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
        import torch._dynamo
        import torch._inductor.config as inductor_config

        inductor_config.freezing = bool(opts["freezing"])
        torch._dynamo.reset()

        model = model.eval().to(spec.device)
        x = example.to(spec.device)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        mode = None if opts["mode"] == "default" else str(opts["mode"])
        compiled = torch.compile(model, mode=mode, dynamic=bool(opts["dynamic"]), fullgraph=False)

        info: dict[str, Any] = {
            "mode": str(opts["mode"]),
            "freezing": bool(opts["freezing"]),
            "dynamic": bool(opts["dynamic"]),
            "cache": str(opts["cache"]),
            "cache_dir": str(cache),
            "compile_in_first_call": True,
            "autocast": spec.precision != "fp32",
            "channels_last": spec.channels_last,
            "torch": torch.__version__,
        }
        compiles_before = _compile_count()
        breaks_before = _graph_break_count()
        _clear_metrics()  # the records dynamo keeps from now on are this case's

        def run():
            # try/except costs nothing in CPython 3.11+ until something raises, so the timed
            # path is the same as a hand-written loop's.
            try:
                with torch.inference_mode(), amp_context(spec.device, spec.precision):
                    return compiled(x)
            except Exception as exc:
                raise _compile_failure(exc) from exc

        def after_timing() -> list[str]:
            info["graphs"] = _compile_count() - compiles_before
            info["graph_breaks"] = _graph_break_count() - breaks_before
            reasons = _recompile_reasons()
            info["recompiles_in_timed_region"] = len(reasons)
            if not reasons:
                return []
            info["recompile_reasons"] = reasons[:5]
            return [
                f"torch.compile recompiled {len(reasons)} time(s) after the first call (warmup or timed"
                f" samples are not steady-state): {reasons[0]}"
            ]

        def predict(batch):
            batch = batch.to(spec.device)
            if spec.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), amp_context(spec.device, spec.precision):
                return compiled(batch).float().cpu()

        return Prepared(
            run=run,
            sync=device_sync(spec.device),
            predict=predict,
            info=info,
            after_timing=after_timing,
            transfer=torch_transfer(x, run) if spec.device == "cuda" else None,
        )


BACKEND = CompiledBackend()
