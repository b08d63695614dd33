"""OpenVINO: convert (cached as IR on disk), compile for the case's device, time one request.

Package `openvino` (a core dependency of cnnbench), never `onnxruntime-openvino`, which owns the
same `onnxruntime` package as onnxruntime-gpu and would silently replace it.

Conversion. `convert` option: `pytorch` (default) is `openvino.convert_model` on the eager model
(an example batch of `onnxrt.EXPORT_BATCH`, input shape `[-1, C, H, W]` so the batch stays
dynamic); `onnx` converts the cached ONNX export (`onnxrt.export_onnx`, dynamo exporter). The
IR is saved with `compress_to_fp16=False` (OpenVINO's default would store fp32 weights as fp16)
under `$CNNBENCH_CACHE_DIR/openvino`, keyed by everything the ONNX export's key holds (model,
source and code digests, kwargs, input size, weights digest, versions) plus the conversion path
and the openvino version; the batch size is not in the key. `export_ms` is the conversion's time
when it was made, `export_cached` says whether this case reused it, `artifact_bytes` is the
`.xml` plus `.bin` on disk. An int8 case quantizes that IR with NNCF (`cnnbench.backends.quantize`) and
caches the result next to it, keyed by the fp32 IR plus the calibration; its `export_ms` is the
conversion plus the quantization.

Compile. The IR is reshaped to the case's static batch `[B, C, H, W]` (what a latency-minded
deployment compiles; one cached IR serves every batch) and compiled for the device (`cpu` is
OpenVINO's `CPU`; there is no CUDA device in OpenVINO, so `cuda` is `unsupported`) with
`INFERENCE_NUM_THREADS` = the case's threads, `PERFORMANCE_HINT` from the `hint` option
(`latency`, default, or `throughput`; one synchronous request is timed either way) and
`INFERENCE_PRECISION_HINT` set explicitly: OpenVINO's CPU plugin otherwise runs fp32 models in
bf16 on CPUs with bf16 units. fp32 and int8 cases ask for `f32`; `bf16`/`fp16` ask for `bf16`/`f16`
when the CPU reports that capability (`OPTIMIZATION_CAPABILITIES`), else `unsupported`. The
properties read back from the compiled model (`EXECUTION_DEVICES`, the device that actually
ran; hint, threads, streams, inference precision) are recorded; an execution device other than
the one asked for is `unsupported`, never labelled as the case's device.

Timing. The input is a numpy array made before the timed loop; each call is
`request.infer(feed, share_inputs=True, share_outputs=True)` (synchronous: the outputs are
computed when it returns; sharing skips a host copy in and out, as ORT's CPU run reuses its
input array).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from cnnbench.backends import Prepared
from cnnbench.backends.common import check_device
from cnnbench.core.errors import ExportFailed, Unsupported
from cnnbench.core.safeio import atomic_file
from cnnbench.backends.artifacts import cache_dir, output_to, package_version, write_json
from cnnbench.backends.onnxrt import EXPORT_BATCH, export_error_message, export_key, export_onnx
from cnnbench.backends.quantize import NNCF_SETTINGS, QUANTIZE_FORMAT_VERSION, calibration_data, nncf_quantize

__all__ = ["BACKEND", "DEFAULTS", "openvino_cache_dir", "inference_precision"]

DEFAULTS: dict[str, Any] = {"hint": "latency", "convert": "pytorch"}
IR_FORMAT_VERSION = 1
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
_PRECISION_HINTS = {"fp32": ("f32", "FP32"), "int8": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}


def openvino_cache_dir() -> Path:
    return cache_dir() / "openvino"


def inference_precision(precision: str, capabilities: list[str]) -> str:
    """The INFERENCE_PRECISION_HINT for a case precision, or Unsupported when the CPU lacks it."""
    hint, capability = _PRECISION_HINTS[precision]
    if capability not in capabilities:
        raise Unsupported(
            f"{precision} on openvino needs the CPU capability {capability}, which this CPU lacks "
            f"(OPTIMIZATION_CAPABILITIES: {', '.join(capabilities) or 'none'})"
        )
    return hint


def _ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _read_meta(meta_path: Path, blob: str) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    xml = meta_path.with_suffix(".xml")
    if not isinstance(meta, dict) or meta.get("key") != blob or not xml.is_file() or not xml.with_suffix(".bin").is_file():
        return None
    return meta


def _save_ir(ov: Any, ov_model: Any, xml: Path) -> None:
    """Save `.xml` + `.bin` under temporary names that `cnnbench.core.safeio` created (both, before
    OpenVINO writes them), then rename both (bin first: a reader checks the xml)."""
    with atomic_file(xml, what="write the OpenVINO model", companions=(_bin_of,)) as tmp:
        ov.save_model(ov_model, str(tmp), compress_to_fp16=False)


def _bin_of(xml: Path) -> Path:
    """The weights file OpenVINO writes beside an IR's `.xml`."""
    return xml.with_suffix(".bin")


def _convert(ov: Any, model: Any, spec: Any, convert: str, log_path: Path) -> Any:
    import torch

    if convert == "onnx":
        export = export_onnx(model, spec, exporter="dynamo", opset=None, precision="fp32", log_path=log_path)
        src: Any = export["path"]
        kwargs: dict[str, Any] = {}
    else:
        gen = torch.Generator().manual_seed(0)
        src = model
        kwargs = {
            "example_input": torch.randn((EXPORT_BATCH, *spec.input_size), generator=gen),
            "input": [ov.PartialShape([-1, *spec.input_size])],
        }
    try:
        with output_to(log_path), torch.no_grad():
            return ov.convert_model(src, **kwargs)
    except Exception as exc:
        raise ExportFailed(f"openvino.convert_model ({convert}): {export_error_message(exc)}") from exc


def ir_for(model: Any, spec: Any, *, convert: str, log_path: Path, calibration: Any = None) -> dict[str, Any]:
    """The cached IR (fp32, or NNCF int8 when `calibration` is given), made now if missing.

    Returns:
        `xml` (path), `export_ms`, `export_cached`, `artifact_bytes`, `cache_key`, and for int8
        `quantize_ms` and `quantize` (settings).
    """
    import openvino as ov

    key = {
        "ir_format": IR_FORMAT_VERSION,
        **export_key(model, spec, exporter=f"openvino-{convert}", opset=None, precision="fp32"),
        "openvino": ov.__version__,
    }
    blob = json.dumps(key, sort_keys=True, default=repr)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.model)
    cache = openvino_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    xml = cache / f"{safe}-fp32-{convert}-{digest}.xml"
    meta_path = xml.with_suffix(".json")
    meta = _read_meta(meta_path, blob)
    if meta is not None:
        fp32 = {**meta["export"], "xml": str(xml), "export_cached": True}
    else:
        t0 = time.perf_counter()
        ov_model = _convert(ov, model, spec, convert, log_path)
        export_ms = (time.perf_counter() - t0) * 1e3
        _save_ir(ov, ov_model, xml)
        record = {"export_ms": export_ms, "artifact_bytes": _ir_bytes(xml), "cache_key": digest, "convert": convert}
        _write_json(meta_path, {"key": blob, "export": record})
        fp32 = {**record, "xml": str(xml), "export_cached": False}
    if calibration is None:
        return fp32
    return _int8_ir(ov, fp32, calibration, log_path)


def _int8_ir(ov: Any, fp32: dict[str, Any], calibration: Any, log_path: Path) -> dict[str, Any]:
    key = {
        "format": QUANTIZE_FORMAT_VERSION,
        "fp32_ir": fp32["cache_key"],
        "calibration": calibration.key,
        "nncf": package_version("nncf"),
        "settings": NNCF_SETTINGS,
    }
    blob = json.dumps(key, sort_keys=True, default=repr)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    src = Path(fp32["xml"])
    xml = src.with_name(src.stem.replace("-fp32-", "-int8-", 1) + f"-nncf-{digest}.xml")
    meta_path = xml.with_suffix(".json")
    meta = _read_meta(meta_path, blob)
    if meta is not None:
        return {**meta["export"], "xml": str(xml), "export_cached": True}
    quantized, record = nncf_quantize(ov.Core().read_model(str(src)), calibration, log_path=log_path)
    _save_ir(ov, quantized, xml)
    export = {
        "export_ms": float(fp32["export_ms"]) + record["quantize_ms"],
        "convert_ms": float(fp32["export_ms"]),
        "quantize_ms": record["quantize_ms"],
        "quantize": {**record["settings"], "nncf": record["nncf"]},
        "artifact_bytes": _ir_bytes(xml),
        "cache_key": digest,
        "convert": fp32.get("convert"),
    }
    _write_json(meta_path, {"key": blob, "export": export})
    return {**export, "xml": str(xml), "export_cached": False}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json(path, data)


def _property(compiled: Any, name: str) -> Any:
    with contextlib.suppress(Exception):
        value = compiled.get_property(name)
        if hasattr(value, "get_type_name"):  # an openvino.Type: "f32", "bf16"
            return str(value.get_type_name())
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return value if isinstance(value, (int, float, bool)) else str(value)
    return None


class OpenVINOBackend:
    name = "openvino"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import numpy as np
        import torch

        try:
            import openvino as ov
        except ImportError as exc:
            raise Unsupported(f"the openvino backend needs the package openvino: pip install 'cnnbench[deploy]' ({exc})") from None
        check_device(spec.device)
        if spec.device != "cpu":
            raise Unsupported(
                f"OpenVINO has no {spec.device} device (it runs on Intel CPUs, GPUs and NPUs; "
                f"devices here: {', '.join(ov.Core().available_devices)})"
            )
        if spec.channels_last:
            raise Unsupported("channels_last is a PyTorch memory format; OpenVINO picks its own layouts")
        opts = {**DEFAULTS, **spec.option_dict}
        core = ov.Core()
        capabilities = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        precision_hint = inference_precision(spec.precision, capabilities)

        model = model.eval().to("cpu").float()
        log_path = Path(workdir) / "openvino-convert.log"
        calibration = None
        if spec.precision == "int8":

            calibration = calibration_data(spec)
        ir = ir_for(model, spec, convert=str(opts["convert"]), log_path=log_path, calibration=calibration)

        config = {
            "INFERENCE_NUM_THREADS": int(spec.threads),
            "PERFORMANCE_HINT": _HINTS[str(opts["hint"])],
            "INFERENCE_PRECISION_HINT": precision_hint,
        }
        t0 = time.perf_counter()
        ov_model = core.read_model(ir["xml"])
        ov_model.reshape([spec.batch_size, *spec.input_size])
        compiled = core.compile_model(ov_model, "CPU", config)
        session_ms = (time.perf_counter() - t0) * 1e3
        executed = _property(compiled, "EXECUTION_DEVICES") or []
        if not executed or any(not str(d).startswith("CPU") for d in executed):
            raise Unsupported(f"openvino asked for CPU but the compiled model runs on {executed}; not measured")
        request = compiled.create_infer_request()
        x_np = np.ascontiguousarray(example.detach().cpu().float().numpy())
        feed = {0: x_np}
        output = compiled.output(0)

        def run():
            return request.infer(feed, share_inputs=True, share_outputs=True)

        def predict(batch):
            result = request.infer({0: np.ascontiguousarray(batch.detach().cpu().float().numpy())})
            return torch.from_numpy(np.array(result[output])).float()

        info: dict[str, Any] = {
            "runtime": "openvino",
            "openvino": ov.__version__,
            "device_requested": "CPU",
            "execution_devices": executed,
            "performance_hint": _property(compiled, "PERFORMANCE_HINT"),
            "inference_num_threads": _property(compiled, "INFERENCE_NUM_THREADS"),
            "num_streams": _property(compiled, "NUM_STREAMS"),
            "inference_precision": _property(compiled, "INFERENCE_PRECISION_HINT"),
            "config": {k: str(v) for k, v in config.items()},
            "cpu_capabilities": capabilities,
            "convert": str(opts["convert"]),
            "compiled_shape": [spec.batch_size, *spec.input_size],
            "inputs_prepared": "numpy array, made before timing (share_inputs)",
            "export_ms": ir["export_ms"],
            "export_cached": ir["export_cached"],
            "export_path": ir["xml"],
            "artifact_bytes": ir["artifact_bytes"],
            "session_create_ms": session_ms,
            "precision_path": "int8 IR via nncf.quantize" if spec.precision == "int8" else f"inference precision {precision_hint}",
            "export_log": str(log_path) if log_path.exists() else None,
        }
        if calibration is not None:
            info.update(calibration=calibration.info, quantize=ir.get("quantize"), quantize_ms=ir.get("quantize_ms"))
        return Prepared(run=run, sync=None, predict=predict, info=info)


BACKEND = OpenVINOBackend()
