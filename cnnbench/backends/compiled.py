"""torch.compile (TorchInductor), configured for inference the way an expert would.

Options (suite `options:` for backend `compile`, see `cnnbench.suite.schema.BACKEND_OPTIONS`):

- `mode`: default | reduce-overhead | max-autotune, passed to `torch.compile`.
- `freezing` (default on): `torch._inductor.config.freezing`, which folds the weights into the
  graph as constants and lets inductor pre-pack them for oneDNN. On CPU it is what makes
  compiled inference fast (measured in docs/backends.md). It only applies under
  `inference_mode`/`no_grad`, which is how we run.
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

from cnnbench.backends import Prepared, TrainStep
from cnnbench.backends.common import check_device, check_precision, device_sync
from cnnbench.core.errors import CaseFailure, Unsupported, classify_exception
from cnnbench.backends.transfer import torch_transfer
from cnnbench.backends.artifacts import cache_dir
from cnnbench.backends.eager import amp_context
from cnnbench.backends.quantize import calibration_data, pt2e_quantize

__all__ = ["BACKEND", "CompileFailed", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {"mode": "default", "freezing": True, "dynamic": False, "cache": "per-run"}


class CompileFailed(CaseFailure):
    """torch.compile could not compile the model (status `error`, the message says so)."""

    status = "error"


def _cache_dir(choice: str, workdir: str) -> Path:
    if choice == "per-run":
        return Path(workdir).resolve() / "inductor-cache"
    if choice == "shared":

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


def _first_compile_ms() -> float:
    """Milliseconds dynamo spent compiling the frames first compiled since `_clear_metrics()`
    (`entire_frame_compile_time_s` of each record without a recompile reason: tracing, AOT
    autograd, the backend). Compiling is lazy, so this time lies inside the first call."""
    seconds = sum(getattr(m, "entire_frame_compile_time_s", None) or 0.0
                  for m in _metrics() if not getattr(m, "recompile_reason", None))  # fmt: skip
    return round(1000.0 * seconds, 3)


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

    if classify_exception(exc) == "oom" or isinstance(exc, CaseFailure):
        return exc
    inner = getattr(exc, "inner_exception", None)
    shown = _first_line(inner) if isinstance(inner, BaseException) else _first_line(exc)
    return CompileFailed(f"torch.compile failed: {shown}")


def _int8_model(model: Any, spec: Any, workdir: str) -> tuple[Any, dict[str, Any]]:
    """The PT2E int8 model to compile (X86InductorQuantizer; cnnbench.backends.quantize) and its record."""

    if spec.channels_last:
        raise Unsupported("int8 on compile: the PT2E graph is exported for contiguous inputs, not channels_last")
    calibration = calibration_data(spec)
    quantized, record = pt2e_quantize(model, calibration, device=spec.device, log_path=Path(workdir) / "pt2e.log")
    return quantized, {
        "calibration": calibration.info,
        "quantize": {**record["settings"], "torchao": record["torchao"]},
        "quantize_ms": record["quantize_ms"],
        "precision_path": "int8 PT2E (X86InductorQuantizer) + inductor",
    }


class CompiledBackend:
    name = "compile"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import torch

        check_device(spec.device)
        if spec.precision != "int8":  # int8: PT2E below (cnnbench.backends.quantize)
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
        quantized = _int8_model(model, spec, workdir) if spec.precision == "int8" else None
        if quantized is not None:
            model = quantized[0]
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
        if quantized is not None:
            info.update(quantized[1])
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
            info["first_call_compile_ms"] = _first_compile_ms()
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


    def train_step(self, model: Any, spec: Any, *, workdir: str) -> TrainStep:
        """torch.compile the training model with the case's options (mode, dynamic, cache).

        The inductor cache follows the inference convention: a fresh directory per run by
        default (cold compile time, honest), `shared` or a directory path. `freezing` folds
        weights into constants, which only inference can do: refused for train (and off by
        default here, unlike inference). Compilation happens in the first step.
        """
        import torch
        import torch._dynamo
        import torch._inductor.config as inductor_config

        opts = spec.option_dict
        if opts.get("freezing"):
            raise Unsupported("compile option freezing=true is for inference only (it folds the weights into constants)")
        cache = str(opts.get("cache", "per-run"))
        cache_dir = _cache_dir(cache, workdir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)  # read when inductor first needs it
        inductor_config.freezing = False
        torch._dynamo.reset()
        mode = str(opts.get("mode", "default"))
        dynamic = bool(opts.get("dynamic", False))
        compiled = torch.compile(model, mode=None if mode == "default" else mode, dynamic=dynamic)
        _clear_metrics()  # dynamo's compilation records from now on are this case's
        info = {
            "compile": {
                "mode": mode,
                "dynamic": dynamic,
                "freezing": False,
                "cache": cache,
                "cache_dir": str(cache_dir),
                "compile_in_first_call": True,
                "compiled": "model forward, and its backward through AOTAutograd; loss and optimizer eager",
            }
        }

        def after_timing() -> list[str]:
            try:
                info["compile"]["first_call_compile_ms"] = _first_compile_ms()
                reasons = _recompile_reasons()
            except Exception:  # noqa: BLE001 - private dynamo API; detection is best-effort
                return []
            if not reasons:
                return []
            return [
                f"torch.compile recompiled {len(reasons)} time(s) after the first step (warmup or timed samples "
                f"are not steady-state): {reasons[0]}"
            ]

        return TrainStep(net=compiled, info=info, wrap_error=_compile_failure, after_timing=after_timing)


BACKEND = CompiledBackend()
