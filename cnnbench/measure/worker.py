"""Worker mode: measure one case in this process and write its result to a file.

Started by the runner as `python -m cnnbench.measure.worker SPEC_FILE RESULT_FILE` (pyperf's manager and
worker split): stdout and stderr stay free for humans and logs, and the result travels through a
JSON file written atomically at the end. A worker that dies before writing it is classified by
the runner from its exit code or signal. The worker never decides about other cases.

Order inside the worker, each step outside the timed region: set threads, build the model, count
parameters and MACs (cached across workers), load trained weights and open the accuracy dataset
(cnnbench.accuracy), prepare the backend (compile/export/session), open the energy meter and
read idle power (cnnbench.measure.energy), reset memory peaks, time (first call, warmup, samples; energy
and device state read right before the first sample and right after the last), read memory
peaks, the transfer split when asked (cnnbench.backends.transfer), parity vs eager, measured accuracy
through the prepared backend.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from cnnbench.core.errors import CaseFailure, UserError, classify_exception
from cnnbench.core.spec import CaseSpec
from cnnbench import accuracy
from cnnbench.backends import get_backend
from cnnbench.backends.common import example_batch
from cnnbench.backends.quantize import accuracy_change, parity_example
from cnnbench.backends.transfer import measure_split
from cnnbench.core.allocator import check_loaded
from cnnbench.core.safeio import atomic_write
from cnnbench.measure.counting import counts_for
from cnnbench.measure.energy import CaseProbes
from cnnbench.measure.memguard import DoesNotFit, apply_memory_limit, preflight
from cnnbench.measure.memory import MemoryTracker
from cnnbench.measure.parity import check_parity
from cnnbench.measure.profile import activation_bytes
from cnnbench.measure.timing import time_callable
from cnnbench.measure.training import prepare_train
from cnnbench.models.registry import build_model, published_metadata
from cnnbench.models.timm_zoo import check_counts

__all__ = ["run_case", "main", "classify_exception"]


def _set_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return torch.get_num_threads()


def run_case(spec: CaseSpec, *, workdir: str, marks: dict[str, int] | None = None) -> dict[str, Any]:
    """Measure `spec` in this process and return the run record (see results.build_record)."""
    marks = marks if marks is not None else {}
    out: dict[str, Any] = {"status": "ok", "error": None, "warnings": []}
    out["threads_used"] = _set_threads(spec.threads)
    kwargs = dict(spec.model_kwargs)
    _add_counts(out, spec, kwargs)
    model, evaluation, example, prepared = _build_and_prepare(out, spec, kwargs, workdir=workdir)
    timing = _time_prepared(out, spec, model, example, prepared, marks)
    if spec.mode == "inference" and (spec.backend != "eager" or spec.precision != "fp32"):
        _add_parity(out, spec, model, example, prepared)
    if spec.mode == "train":
        out["train"] = prepared.train_record(timing.samples_ms)
    if evaluation is not None:  # last, outside the timed region; a failure becomes the status
        evaluation.record(out, prepared.predict, batch_size=spec.batch_size)
        if spec.precision == "int8":  # the accuracy int8 costs: the same images through eager fp32

            accuracy_change(out, model, evaluation, batch_size=spec.batch_size)
    return out


def _add_counts(out: dict[str, Any], spec: CaseSpec, kwargs: dict[str, Any]) -> None:
    """Parameters and MACs (cached across workers) and, for registry models, the published
    figures they are checked against. A model the counters cannot trace is still timed."""

    try:
        counts = counts_for(spec.model, source=spec.source, kwargs=kwargs, input_size=spec.input_size)
    except Exception as exc:  # a model the counters cannot trace is still timed
        if classify_exception(exc) == "oom":
            raise
        out["warnings"].append(f"counting failed: {type(exc).__name__}: {str(exc).strip()[:200]}")
    else:
        out["params"] = counts["params"]
        out["trainable_params"] = counts["trainable_params"]
        out["gmacs_per_image"] = counts["gmacs"]
        out["gmacs"] = counts["gmacs"] * spec.batch_size
        out["gflops"] = 2 * out["gmacs"]
        out["counter"] = counts.get("counter", "fvcore")
        out["aux_heads_included"] = counts.get("aux_heads_included")
        out["counts"] = {k: v for k, v in counts.items() if k not in ("warnings",)}
        out["warnings"].extend(counts.get("warnings") or [])
    if spec.source is None:
        out["published"] = published_metadata(spec.model, spec.input_size)

        out["warnings"].extend(check_counts(out["published"], params=out.get("params"), gmacs_per_image=out.get("gmacs_per_image")))


def _build_and_prepare(out: dict[str, Any], spec: CaseSpec, kwargs: dict[str, Any], *, workdir: str) -> tuple[Any, Any, Any, Any]:
    """Build the model (after the memory preflight), load its weights, open the accuracy
    dataset and prepare the backend (or the training step). Returns (model, evaluation,
    example batch, prepared)."""
    import torch

    if spec.source is None:  # registry models: a user's builder is not run a third time

        problem = preflight(lambda: build_model(spec.model, source=None, kwargs=kwargs, input_size=spec.input_size),
                            spec, params=out.get("params"))
        if problem:
            raise DoesNotFit(problem)
    torch.manual_seed(0)
    model = build_model(spec.model, source=spec.source, kwargs=kwargs, input_size=spec.input_size)
    evaluation = accuracy.prepare(model, spec)  # weights go in before the backend compiles/exports
    example = example_batch(spec)
    if spec.mode == "train":  # one optimizer step per call instead of the backend's forward

        prepared = prepare_train(model, example, spec, workdir=workdir)
    else:
        prepared = get_backend(spec.backend).prepare(model, example, spec, workdir=workdir)
    out["backend_info"] = prepared.info
    out["device_name"] = (
        torch.cuda.get_device_name(torch.device(spec.device)) if spec.device == "cuda" else "cpu"
    )
    return model, evaluation, example, prepared


def _time_prepared(out: dict[str, Any], spec: CaseSpec, model: Any, example: Any, prepared: Any,
                   marks: dict[str, int]) -> Any:
    """The timed loop with its energy window and memory peaks, then what is read right after
    it (analytic memory, the backend's after-timing checks, the transfer split). Returns the
    timing."""

    # Energy meter + device state (cnnbench.measure.energy); opened and idle power read before the memory
    # baseline, so neither NVML's library nor the idle wait is in the measured peak.
    probes = CaseProbes.for_spec(spec)
    probes.measure_idle()
    tracker = MemoryTracker(spec.device, backend=spec.backend)
    tracker.start()

    def warmup_starts() -> None:
        marks["first_warmup_ns"] = time.monotonic_ns()
        tracker.first_call_done()

    timing = time_callable(
        prepared.run, measure=spec.measure, sync=prepared.sync, on_warmup_start=warmup_starts,
        on_timed_start=probes.window_start, on_timed_end=probes.window_end,
    )
    out["memory"] = tracker.stop()
    out["memory"].update(_analytic_memory(model, example, spec, out["warnings"]))
    if spec.mode == "train":
        out["memory"].update(_train_total(out["memory"], spec.device))
    warnings = out["warnings"]  # to_dict() has its own "warnings": keep the counting ones, once
    out.update(timing.to_dict())
    out["warnings"] = warnings + timing.warnings + probes.warnings()
    out.update(probes.record(images=spec.batch_size * timing.block_size * len(timing.samples_ms)))
    if prepared.after_timing is not None:
        out["warnings"].extend(prepared.after_timing())
    if spec.measure.transfer:  # after the timed loop and the energy window

        out["transfer"] = measure_split(spec, prepared)
    return timing


def _add_parity(out: dict[str, Any], spec: CaseSpec, model: Any, example: Any, prepared: Any) -> None:
    """Outputs vs eager fp32, after the timed loop (never inside it); a mismatch keeps the
    timings in the record but marks it invalid."""

    parity_x, parity_inputs = example, None
    if spec.precision == "int8":  # in the calibration's range (cnnbench.backends.quantize.parity_example)

        parity_x, parity_inputs = parity_example(spec, example)
    out["parity"] = check_parity(spec, model, parity_x, prepared)
    if parity_inputs:
        out["parity"]["inputs"] = parity_inputs
    if not out["parity"]["ok"]:  # timings stay in the record, marked invalid
        out["status"], out["error"] = "fail_accuracy", out["parity"]["reason"]


def _train_total(memory: dict[str, Any], device: str) -> dict[str, Any]:
    """A training step's peak with weights, gradients, optimizer state and activations together.

    On CUDA the allocator's peak already counts the weights (they are live when the peak is
    reset). On CPU they are in the RSS baseline the peak growth is taken over, so their stored
    bytes are added back.
    """
    if device == "cuda":
        value, how = memory.get("cuda_peak_allocated_bytes"), "cuda_peak_allocated_bytes (weights included)"
    else:
        peak, params = memory.get("peak_rss_delta_bytes"), memory.get("param_bytes")
        value = peak + params if peak is not None and params is not None else None
        how = "peak_rss_delta_bytes + param_bytes (the weights sit in the RSS baseline)"
    return {} if value is None else {"train_total_peak_bytes": int(value), "train_total_method": how}


def _analytic_memory(model: Any, example: Any, spec: CaseSpec, warnings: list[str]) -> dict[str, Any]:
    """Parameter bytes as stored and activation bytes of one forward at this batch/precision.

    Computed after the timed loop: the extra forward would otherwise raise the RSS baseline the
    measured peak is taken against. Autocast keeps weights stored in fp32, so parameters are
    counted at their stored size; activations at the case precision.
    """

    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = example.device
    try:
        stored = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
        acts = activation_bytes(model, example.to(device), spec.precision)
    except Exception as exc:  # noqa: BLE001 - analytic figures are extras, never fail a case
        warnings.append(f"analytic memory failed: {type(exc).__name__}: {str(exc).strip()[:160]}")
        return {}
    return {"param_bytes": stored, "activation_bytes": acts, "analytic_precision": spec.precision}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, default=str))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m cnnbench.measure.worker SPEC_FILE RESULT_FILE", file=sys.stderr)
        return 2
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    started = time.monotonic_ns()
    spec = CaseSpec.from_dict(json.loads(spec_path.read_text(encoding="utf-8")))

    apply_memory_limit(spec.measure.memory_limit)  # before torch: its own start-up counts too
    marks: dict[str, int] = {}
    try:

        if (problem := check_loaded()) is not None:
            raise UserError(problem)
        result = run_case(spec, workdir=str(result_path.parent), marks=marks)
    except Exception as exc:  # noqa: BLE001 - every failure becomes data on the case
        status = classify_exception(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {
            "status": status,
            "error": f"{type(exc).__name__}: {message}" if not isinstance(exc, (CaseFailure, UserError)) else message,
            "traceback": "".join(traceback.format_exception(exc)[-6:]),
            "warnings": [],
        }
    result["worker_started_ns"] = started
    if "first_warmup_ns" in marks:
        result["first_warmup_ns"] = marks["first_warmup_ns"]
    result["duration_s"] = (time.monotonic_ns() - started) / 1e9
    _write_json_atomic(result_path, result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
