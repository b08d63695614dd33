"""ONNX Runtime: export with torch.onnx (cached on disk), one tuned session, the real provider.

Export. `torch.onnx.export` with the exporter chosen by the `exporter` option:

- `dynamo` (default): the torch.export-based exporter, torch's recommended and maintained path,
  with cleaner graphs; slower to export, which the cache amortises (which models were tried and
  how long each exporter takes: docs/backends.md).
- `legacy`: the TorchScript tracer (deprecated, but exports the same zoo, with the same
  numerics after ORT's graph optimisations, much faster).

The batch axis is dynamic (the export runs on a batch of `EXPORT_BATCH` so that the dynamo
exporter cannot specialise it), the weights are inside the one `.onnx` file
(`external_data=False`; only a model over protobuf's 2 GB limit gets a side `.data` file), and
the opset is the exporter's default unless the `opset` option sets one; the opset actually
written is read back from the file and recorded. A graph whose input batch came out fixed (a
forward that turns `x.shape[0]` into a Python int makes both exporters specialise it) is
refused as `export_failed` rather than cached and run at the wrong batch size.

Everything the exporters print (progress lines, TorchScript IR dumps on failure, warnings) goes
to `onnx-export.log` in the case's working directory, never to the results. An export failure
raises `ExportFailed` with the exporter's own one-line reason (status `export_failed`); the
model's other backends are separate cases and still run.

Export cache. Exports are kept under `$CNNBENCH_CACHE_DIR/onnx` (default
`~/.cache/cnnbench/onnx`), keyed by model name, user-model source and the hash of the module
file defining the model class, builder kwargs, input size, precision, exporter, requested opset,
torch/onnx/onnxscript versions and a digest of the weights (so a different seed or a loaded
checkpoint never reuses a stale graph). The batch size is not in the key: one export serves
every batch size. `export_ms` is the time the export took when it was made; `export_cached`
says whether this case reused it.

Session. Graph optimisation from the `optimization` option (default `all`), intra-op threads
= the case's threads, inter-op threads 1, sequential execution, ORT's own logging at ERROR and
above only (`log_severity_level=3`); every setting is recorded in `backend_info`.

Providers. The CUDA provider is asked for only when CUDA is really usable (torch sees a GPU
and this ORT build has `CUDAExecutionProvider`). ORT falls back to CPU silently when the CUDA
provider cannot load, so the provider recorded is `session.get_providers()[0]`, the one actually
used, next to the one requested; a CUDA request that ended on CPU is `unsupported` (with both
providers in the reason), never measured and labelled CUDA. On CUDA, inputs and outputs are
bound on the device with IO binding, so no host copy is timed; on CPU, the input is a numpy
array made before the timed loop.

Precision. fp32 everywhere; fp16 only on CUDA, through a converted model (the
`onnxconverter-common` package, a dependency of cnnbench; without it the case is `unsupported`,
with the reason); bf16 is `unsupported` (no converter path to a bf16 graph that the CPU or
CUDA providers run well).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from cnnbench.backends import Prepared
from cnnbench.backends.artifacts import cache_dir, output_to, source_fingerprint, write_json
from cnnbench.backends.common import check_device
from cnnbench.core.environment import package_versions
from cnnbench.core.errors import ExportFailed, Unsupported
from cnnbench.core.safeio import atomic_file
from cnnbench.backends.quantize import calibration_data, ort_qdq, ort_reduce_range
from cnnbench.backends.transfer import ort_parts

__all__ = ["BACKEND", "DEFAULTS", "EXPORT_BATCH", "export_onnx", "onnx_cache_dir"]

DEFAULTS: dict[str, Any] = {"exporter": "dynamo", "opset": None, "optimization": "all"}

# The batch the model is exported at. Not 1: torch.export specialises sizes 0 and 1, so a
# batch-1 example would make the dynamo exporter bake the batch in.
EXPORT_BATCH = 2

# Bump when what `export_onnx` writes changes, so older cached exports are not reused.
EXPORT_FORMAT_VERSION = 1

_OPTIMIZATION_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disable": "ORT_DISABLE_ALL",
}
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def onnx_cache_dir() -> Path:
    """Where exports are cached: `$CNNBENCH_CACHE_DIR/onnx`, else `~/.cache/cnnbench/onnx`."""

    return cache_dir() / "onnx"


# ---------------------------------------------------------------------------------------------
# Export and its cache




_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def export_error_message(exc: BaseException) -> str:
    """The exporter's reason in one line.

    The dynamo exporter's first line is generic ("Failed to convert the exported program to an
    ONNX model. This is step 3/3 ..."); its "## Exception summary" section names the cause
    (e.g. "DispatchError: No ONNX function found for <OpOverload(op='prims.bessel_j0', ...)>").
    The legacy exporter's first line is the reason ("Exporting the operator 'aten::cummax' to
    ONNX opset version 20 is not supported").
    """
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        for ln in lines[lines.index("## Exception summary") + 1 :]:
            m = re.match(r"<class '(?:[\w.]+\.)?(\w+)'>:\s*(.*)", ln)
            if m:
                return f"{m.group(1)}: {m.group(2)}"
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _file_digest(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _code_digest(model: Any) -> str | None:
    """Hash of the file defining the model's class: editing the model invalidates its export."""
    try:
        return _file_digest(inspect.getsourcefile(type(model)))
    except (TypeError, OSError):
        return None


def _weights_digest(model: Any) -> str:
    """A digest of every parameter and buffer (names, shapes, dtypes, bytes)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_key(model: Any, spec: Any, *, exporter: str, opset: int | None, precision: str) -> dict[str, Any]:
    """Everything that decides what an export contains (never the batch size)."""

    return {
        "format": EXPORT_FORMAT_VERSION,
        "model": spec.model,
        "source": spec.source,
        "source_sha256": source_fingerprint(spec.source),
        "code_sha256": _code_digest(model),
        "kwargs": dict(spec.model_kwargs),
        "input_size": list(spec.input_size),
        "precision": precision,
        "exporter": exporter,
        "opset": opset,
        "versions": package_versions(("onnx", "onnxscript", "torchvision"), torch_runtime=True),
        "weights": _weights_digest(model),
    }


def _read_meta(meta_path: Path, blob: str) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != blob:
        return None
    if not Path(meta_path.with_suffix(".onnx")).is_file():
        return None
    return meta


def _data_file(onnx_path: Path) -> Path:
    """Where an ONNX graph over 2 GB keeps its weights: beside it, as `NAME.data`."""
    return Path(str(onnx_path) + ".data")




def _graph_facts(path: Path) -> tuple[int | None, str | int | None]:
    """The default-domain opset written in the file, and its first input's batch dimension
    (a name when symbolic, an int when fixed)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    batch: str | int | None = None
    if model.graph.input:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if dims:
            batch = dims[0].dim_param or (int(dims[0].dim_value) if dims[0].HasField("dim_value") else None)
    return opset, batch


def _batch_problem(path: Path, batch_dim: str | int | None, input_size: Any, log_path: Path) -> str | None:
    """Why the exported graph cannot serve other batch sizes, or None when it can.

    A forward that turns `x.shape[0]` into a Python int makes the dynamo exporter fix the
    input's batch, and the legacy tracer bake it into a Reshape further in (the input still
    looks dynamic). So the graph is also run once, at a batch other than the export's.
    """
    import numpy as np
    import onnxruntime as ort

    if isinstance(batch_dim, int):
        return (
            f"the exported graph has a fixed batch size of {batch_dim}, not a dynamic batch axis"
            " (the model turns its batch dimension into a Python constant)"
        )
    probe = EXPORT_BATCH + 1
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    x = np.random.default_rng(0).standard_normal((probe, *input_size)).astype(np.float32)
    try:
        with output_to(log_path):
            sess = ort.InferenceSession(str(path), sess_options=so, providers=[CPU_PROVIDER])
            outs = sess.run(None, {sess.get_inputs()[0].name: x})
    except Exception as exc:  # noqa: BLE001
        return f"the exported graph does not run at batch {probe} (exported at {EXPORT_BATCH}): {export_error_message(exc)}"
    if not outs or np.ndim(outs[0]) == 0 or np.shape(outs[0])[0] != probe:
        shape = np.shape(outs[0]) if outs else None
        return f"the exported graph returns shape {shape} at batch {probe}: its batch axis is not dynamic"
    return None


def _run_exporter(model: Any, example: Any, dest: Path, *, exporter: str, opset: int | None) -> None:
    import torch

    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            model,
            (example,),
            str(dest),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamic_shapes=({0: batch},),
            external_data=False,
            optimize=True,
            verbose=False,
        )
    else:
        torch.onnx.export(
            model,
            (example,),
            str(dest),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            verbose=False,
        )


def export_onnx(
    model: Any, spec: Any, *, exporter: str, opset: int | None, precision: str = "fp32", log_path: Path
) -> dict[str, Any]:
    """The ONNX file for this model, from the cache or freshly exported into it.

    Returns:
        `path`, `export_ms` (time of the export that made the file), `export_cached`, `opset`,
        `exporter`, `external_data`, `cache_key` (digest), `file_bytes`.

    Raises:
        ExportFailed: the exporter rejected the model (one line, the exporter's reason).
        Unsupported: fp16 requested but onnxconverter-common is not installed.
    """
    import torch

    key = export_key(model, spec, exporter=exporter, opset=opset, precision=precision)
    blob = json.dumps(key, sort_keys=True, default=repr)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.model)
    cache = onnx_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{safe}-{precision}-{exporter}-{digest}.onnx"
    meta_path = path.with_suffix(".json")

    meta = _read_meta(meta_path, blob)
    if meta is not None:
        return {**meta["export"], "path": str(path), "export_cached": True}

    src = export_onnx(model, spec, exporter=exporter, opset=opset, precision="fp32", log_path=log_path) if precision == "fp16" else None
    # The exporter writes into a temporary file safeio made beside `path` (and, for a graph over
    # 2 GB, its weights into TMP.data): renamed over the cache's names only once the file checks
    # out, removed on any failure.
    with atomic_file(path, what="write the ONNX export", companions=(_data_file,)) as tmp:
        if src is not None:
            t0 = time.perf_counter()
            _convert_fp16(Path(src["path"]), tmp)
            convert_ms = (time.perf_counter() - t0) * 1e3
            export_ms = src["export_ms"] + convert_ms
        else:
            gen = torch.Generator().manual_seed(0)
            example = torch.randn((EXPORT_BATCH, *spec.input_size), generator=gen)
            t0 = time.perf_counter()
            try:
                with output_to(log_path):
                    _run_exporter(model, example, tmp, exporter=exporter, opset=opset)
            except Exception as exc:  # any exporter failure is this case's status
                raise ExportFailed(f"{exporter} exporter: {export_error_message(exc)}") from exc
            export_ms = (time.perf_counter() - t0) * 1e3
            convert_ms = None
        data = _data_file(tmp)
        external = data.exists() and data.stat().st_size > 0  # safeio reserved it empty; the exporter fills it
        written_opset, batch_dim = _graph_facts(tmp)
        if precision == "fp32":
            problem = _batch_problem(tmp, batch_dim, spec.input_size, log_path)
            if problem:
                raise ExportFailed(f"{exporter} exporter: {problem}")
    export = {
        "export_ms": export_ms,
        "fp16_convert_ms": convert_ms,
        "opset": written_opset,
        "exporter": exporter,
        "external_data": external,
        "cache_key": digest,
        "file_bytes": path.stat().st_size,
        "exported_at_batch": EXPORT_BATCH,
    }
    write_json(meta_path, {"key": blob, "export": export})
    return {**export, "path": str(path), "export_cached": False}



def _convert_fp16(src: Path, dest: Path) -> None:
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise Unsupported(
            "fp16 on onnxrt needs the optional package onnxconverter-common (pip install onnxconverter-common)"
        ) from None
    import onnx

    model = onnx.load(str(src))
    # keep_io_types: fp32 in and out, cast inside the graph, as eager autocast does.
    converted = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(dest))


# ---------------------------------------------------------------------------------------------
# Session and backend


def cuda_usable() -> bool:
    """CUDA for ORT: torch sees a GPU and this onnxruntime build has the CUDA provider."""
    import onnxruntime as ort
    import torch

    return torch.cuda.is_available() and CUDA_PROVIDER in ort.get_available_providers()


def session_options(*, threads: int, optimization: str) -> tuple[Any, dict[str, Any]]:
    """ORT session options as this backend sets them, and their record for `backend_info`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    level = _OPTIMIZATION_LEVELS[optimization]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    record = {
        "graph_optimization_level": level,
        "intra_op_num_threads": threads,
        "inter_op_num_threads": 1,
        "execution_mode": "ORT_SEQUENTIAL",
        "log_severity_level": 3,
        "intra_op_allow_spinning": "ORT default (on)",
        "enable_cpu_mem_arena": bool(so.enable_cpu_mem_arena),
        "enable_mem_pattern": bool(so.enable_mem_pattern),
    }
    return so, record


def int8_export(
    model: Any, spec: Any, *, exporter: str, opset: int | None, log_path: Path, cpu_provider: bool = True
) -> tuple[dict[str, Any], Any]:
    """The int8 QDQ file of the model's fp32 export, shaped like `export_onnx`'s dict (its
    `export_ms` is the export plus the quantization), and the calibration it used. For the CPU
    provider the weights are 7-bit where this CPU lacks VNNI (`quantize.ort_reduce_range`)."""

    fp32 = export_onnx(model, spec, exporter=exporter, opset=opset, precision="fp32", log_path=log_path)
    calibration = calibration_data(spec)
    reduce, why = ort_reduce_range() if cpu_provider else (False, "not the CPU provider: 8-bit weights")
    q = ort_qdq(fp32, calibration, log_path=log_path, reduce_range=reduce)
    export = {
        **fp32,
        "path": q["path"],
        "export_ms": float(fp32["export_ms"]) + q["quantize_ms"],
        "export_cached": bool(fp32["export_cached"] and q["quantize_cached"]),
        "file_bytes": q["file_bytes"],
        "quantize_ms": q["quantize_ms"],
        "quantize": {**q["settings"], "reduce_range_why": why, "pre_process": q["pre_process"], "cache_key": q["cache_key"]},
    }
    return export, calibration


def check_precision_for_ort(spec: Any, cuda: bool) -> None:
    if spec.precision == "bf16":
        raise Unsupported("bf16 on onnxrt: no bf16 conversion path for the CPU or CUDA providers")
    if spec.precision == "int8" and spec.device != "cpu":
        raise Unsupported("int8 on onnxrt runs QDQ graphs on the CPU provider; int8 on a GPU is the tensorrt backend")
    if spec.precision == "fp16" and spec.device != "cuda":
        raise Unsupported("fp16 on onnxrt runs only on the CUDA provider; the CPU provider has no fast fp16 kernels")
    if spec.precision == "fp16" and not cuda:
        raise Unsupported("fp16 on onnxrt needs the CUDA provider, which this onnxruntime build lacks")


class OnnxRuntimeBackend:
    name = "onnxrt"
    no_training = "ONNX Runtime is inference-only: no training step"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import torch

        opts, exporter, opset, use_cuda = _case_options(spec)
        model = model.eval().to("cpu").float()
        log_path = Path(workdir) / "onnx-export.log"
        calibration = None
        if spec.precision == "int8":  # static PTQ of the fp32 export (cnnbench.backends.quantize)
            export, calibration = int8_export(model, spec, exporter=exporter, opset=opset, log_path=log_path)
        else:
            export = export_onnx(model, spec, exporter=exporter, opset=opset, precision=spec.precision, log_path=log_path)

        device_id = (torch.device(spec.device).index or 0) if spec.device == "cuda" else 0
        sess, requested, so_record, session_ms = _open_session(export, spec, opts, use_cuda, device_id)
        warnings: list[str] = []
        run, sync, transfer = _bound_run(sess, example, device_id)
        info = _backend_info(sess, requested, so_record, session_ms, export, opset, spec, log_path)
        if calibration is not None:
            info.update(calibration=calibration.info, quantize=export["quantize"], quantize_ms=export["quantize_ms"],
                        precision_path="int8 QDQ graph via onnxruntime.quantization.quantize_static")  # fmt: skip
        return Prepared(
            run=run, sync=sync, predict=_predictor(sess), info=info, after_timing=lambda: list(warnings), transfer=transfer
        )


def _case_options(spec: Any) -> tuple[dict[str, Any], str, int | None, bool]:
    """(options, exporter, opset, use the CUDA provider), or Unsupported before anything is
    exported: a device, layout or precision this backend cannot serve."""
    import onnxruntime as ort

    check_device(spec.device)
    if spec.channels_last:
        raise Unsupported("channels_last is a PyTorch memory format; ONNX Runtime picks its own layouts")
    opts = {**DEFAULTS, **spec.option_dict}
    exporter = str(opts["exporter"])
    opset = None if opts["opset"] is None else int(opts["opset"])
    use_cuda = spec.device == "cuda" and cuda_usable()
    check_precision_for_ort(spec, use_cuda)
    if spec.device == "cuda" and not use_cuda:
        raise Unsupported(
            "onnxrt on cuda needs the CUDA provider, which this onnxruntime build lacks "
            f"(available: {ort.get_available_providers()})"
        )
    return opts, exporter, opset, use_cuda


def _open_session(
    export: dict[str, Any], spec: Any, opts: dict[str, Any], use_cuda: bool, device_id: int
) -> tuple[Any, str, dict[str, Any], float]:
    """The tuned session, (session, provider requested, options record, creation ms). ORT falls
    back to CPU silently, so a session that does not run on the provider asked for is refused:
    a CPU timing under a CUDA key would be a false label."""
    import onnxruntime as ort

    so, so_record = session_options(threads=spec.threads, optimization=str(opts["optimization"]))
    requested = CUDA_PROVIDER if spec.device == "cuda" else CPU_PROVIDER
    providers: list[Any] = [CPU_PROVIDER]
    if use_cuda:
        providers = [(CUDA_PROVIDER, {"device_id": device_id}), CPU_PROVIDER]
    ort.set_default_logger_severity(3)  # errors only, also for the process-wide logger
    t0 = time.perf_counter()
    sess = ort.InferenceSession(export["path"], sess_options=so, providers=providers)
    session_ms = (time.perf_counter() - t0) * 1e3
    actual = sess.get_providers()[0]

    if requested != actual:  # a CPU timing under a CUDA key would be a false label
        raise Unsupported(
            f"onnxrt asked for {requested} but the session runs on {actual} "
            f"(session providers {sess.get_providers()}, available {ort.get_available_providers()}); "
            f"not measured, since it would not be a {spec.device} result"
        )
    return sess, requested, so_record, session_ms


def _bound_run(sess: Any, example: Any, device_id: int) -> tuple[Any, Any, Any]:
    """(run, sync, transfer) for the timed loop, with the input made before it: on CUDA bound on
    the device with IO binding (no host copy is timed), on CPU a numpy array."""
    import numpy as np
    import onnxruntime as ort
    import torch

    input_name = sess.get_inputs()[0].name
    x_np = np.ascontiguousarray(example.detach().cpu().float().numpy())
    if sess.get_providers()[0] != CUDA_PROVIDER:
        feed = {input_name: x_np}

        def run():
            return sess.run(None, feed)

        return run, None, None

    # Input copied to the device once, here; output allocated on the device by ORT.
    x_dev = ort.OrtValue.ortvalue_from_numpy(x_np, "cuda", device_id)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(input_name, x_dev)
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", device_id)

    def run():
        sess.run_with_iobinding(binding)
        return binding

    def sync():
        binding.synchronize_outputs()
        torch.cuda.synchronize()

    return run, sync, lambda: ort_parts(x_dev, x_np, binding, run)


def _predictor(sess: Any) -> Any:
    """`predict(batch)` for parity and accuracy: the session on a host batch, torch tensors out."""
    import numpy as np
    import torch

    input_name = sess.get_inputs()[0].name

    def predict(batch):
        outs = sess.run(None, {input_name: np.ascontiguousarray(batch.detach().cpu().float().numpy())})
        tensors = [torch.from_numpy(np.asarray(o)).float() for o in outs]
        return tensors[0] if len(tensors) == 1 else tensors

    return predict


def _backend_info(
    sess: Any, requested: str, so_record: dict[str, Any], session_ms: float, export: dict[str, Any],
    opset: int | None, spec: Any, log_path: Path,
) -> dict[str, Any]:
    """`backend_info`: the provider actually used next to the one requested, every session
    setting, and where the export came from."""
    import onnxruntime as ort

    actual = sess.get_providers()[0]
    io_binding = actual == CUDA_PROVIDER
    return {
        "provider": actual,
        "provider_requested": requested,
        "providers_available": list(ort.get_available_providers()),
        "session_providers": list(sess.get_providers()),
        "io_binding": io_binding,
        "inputs_prepared": "device OrtValue (IO binding)" if io_binding else "numpy array, made before timing",
        "session_options": so_record,
        "session_create_ms": session_ms,
        "exporter": export["exporter"],
        "opset": export["opset"],
        "opset_requested": opset,
        "export_ms": export["export_ms"],
        "export_cached": export["export_cached"],
        "export_path": export["path"],
        "export_file_bytes": export["file_bytes"],
        "artifact_bytes": export["file_bytes"],
        "exported_at_batch": export["exported_at_batch"],
        "dynamic_batch": True,
        "external_data": export["external_data"],
        "precision_path": "fp16 graph via onnxconverter-common (fp32 in/out)" if spec.precision == "fp16" else "fp32",
        "onnxruntime": ort.__version__,
        "export_log": str(log_path) if log_path.exists() else None,
    }


BACKEND = OnnxRuntimeBackend()
