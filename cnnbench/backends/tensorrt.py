"""TensorRT, through ONNX Runtime's TensorRT execution provider, on NVIDIA GPUs.

onnxruntime-gpu ships `TensorrtExecutionProvider` (it is listed by `get_available_providers()`
even where it cannot load), but the provider needs the TensorRT libraries (`libnvinfer.so.10`,
`libnvonnxparser.so.10`, CUDA 13 for onnxruntime-gpu 1.31), which are not installed with it:
`pip install 'cnnbench[tensorrt]'` brings them (the `tensorrt-cu13` wheels, whose libraries
sit in the `tensorrt_libs` package and are preloaded from there).

`tensorrt_status(device)` decides, before anything is built, whether a case can run, and why
not: the case's device is CUDA, torch sees a GPU, this onnxruntime build has the provider, and
the TensorRT libraries load. Any "no" is `unsupported` with that reason. After the session is
created, the provider that actually runs the graph is checked (`session.get_providers()[0]`):
ORT silently falls back to CUDA or CPU when TensorRT cannot initialise, and such a session is
`unsupported`, never measured under the TensorRT label.

The model is the backend `onnxrt`'s cached export (`onnxrt.export_onnx`), its int8 QDQ version
for int8 (`cnnbench.backends.quantize.ort_qdq`; TensorRT runs the QDQ nodes as explicit quantization,
`trt_int8_enable`). fp16 is `trt_fp16_enable` on the fp32 graph; bf16 is `unsupported`. The
optimisation profile is the case's shape (min = opt = max), so the engine is built while the
session is created: `session_create_ms` is the engine build (apart from latency), and
`engine_cached` says whether TensorRT's engine cache (`$CNNBENCH_CACHE_DIR/tensorrt`, ORT keys
engines by model, profile and GPU) already held it. Inputs and outputs are bound on the GPU
(IO binding), as for onnxrt on CUDA.
"""

from __future__ import annotations

import ctypes
import glob
import os
import time
from pathlib import Path
from typing import Any

from cnnbench.backends import Prepared
from cnnbench.core.errors import Unsupported
from cnnbench.backends.artifacts import cache_dir
from cnnbench.backends.onnxrt import CUDA_PROVIDER, export_onnx, int8_export, session_options

__all__ = ["BACKEND", "TRT_PROVIDER", "LIBRARIES", "tensorrt_status", "check_session_provider", "tensorrt_cache_dir"]

TRT_PROVIDER = "TensorrtExecutionProvider"
LIBRARIES = ("libnvinfer.so.10", "libnvonnxparser.so.10")
INSTALL_HINT = "pip install 'cnnbench[tensorrt]'"


def tensorrt_cache_dir() -> Path:
    return cache_dir() / "tensorrt"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _library_dirs() -> list[str]:
    """Where the pip wheels put the TensorRT libraries (`tensorrt_libs`), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_libs")
    return list(spec.submodule_search_locations or []) if spec else []


def _load_libraries() -> str | None:
    """Load the TensorRT libraries ORT's provider links against; None when they load, else why.

    A library found by the dynamic loader's own search is loaded by name; else from the
    `tensorrt_libs` wheel's directory with RTLD_GLOBAL, so the provider's dlopen finds it loaded.
    """
    missing = []
    for name in LIBRARIES:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            continue
        except OSError as exc:
            first = str(exc)
        for d in _library_dirs():
            for path in sorted(glob.glob(os.path.join(d, name + "*"))):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    break
                except OSError:
                    continue
            else:
                continue
            break
        else:
            missing.append(f"{name} ({first})")
    if missing:
        return f"the TensorRT libraries do not load: {'; '.join(missing)}; {INSTALL_HINT}"
    return None


def tensorrt_status(device: str) -> str | None:
    """None when a TensorRT case on `device` can run on this machine, else the reason."""
    if device != "cuda":
        return f"TensorRT runs on NVIDIA GPUs (device cuda); this case's device is {device}"
    if not _cuda_available():
        return "TensorRT needs a CUDA GPU, and torch sees none on this machine"
    providers = _ort_providers()
    if TRT_PROVIDER not in providers:
        return f"this onnxruntime build has no {TRT_PROVIDER} (available: {', '.join(providers)}); use onnxruntime-gpu"
    return _load_libraries()


def check_session_provider(session_providers: list[str]) -> None:
    """Unsupported unless TensorRT is the session's first provider (ORT falls back silently)."""
    actual = session_providers[0] if session_providers else None
    if actual != TRT_PROVIDER:
        raise Unsupported(
            f"tensorrt asked for {TRT_PROVIDER} but the session runs on {actual} (session providers "
            f"{session_providers}); not measured, since it would not be a TensorRT result"
        )


def _engine_files(path: Path) -> set[str]:
    return {p.name for p in path.glob("*")} if path.is_dir() else set()


class TensorRTBackend:
    name = "tensorrt"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        reason = tensorrt_status(spec.device)
        if reason:
            raise Unsupported(reason)
        if spec.channels_last:
            raise Unsupported("channels_last is a PyTorch memory format; TensorRT picks its own layouts")
        if spec.precision == "bf16":
            raise Unsupported("bf16 on tensorrt: not enabled through ONNX Runtime's TensorRT provider here")
        return _prepare_on_gpu(model, example, spec, workdir=workdir)


def _prepare_on_gpu(model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:  # pragma: no cover - GPU only
    import numpy as np
    import onnxruntime as ort
    import torch

    model = model.eval().to("cpu").float()
    log_path = Path(workdir) / "onnx-export.log"
    calibration = None
    if spec.precision == "int8":
        export, calibration = int8_export(model, spec, exporter="dynamo", opset=None, log_path=log_path, cpu_provider=False)
    else:
        export = export_onnx(model, spec, exporter="dynamo", opset=None, precision="fp32", log_path=log_path)
    device_id = torch.device(spec.device).index or 0
    engines = tensorrt_cache_dir()
    engines.mkdir(parents=True, exist_ok=True)
    shape = "x".join(str(d) for d in (spec.batch_size, *spec.input_size))
    input_name = "input"
    trt_options = {
        "device_id": device_id,
        "trt_fp16_enable": spec.precision == "fp16",
        "trt_int8_enable": spec.precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(engines),
        "trt_profile_min_shapes": f"{input_name}:{shape}",
        "trt_profile_opt_shapes": f"{input_name}:{shape}",
        "trt_profile_max_shapes": f"{input_name}:{shape}",
    }
    so, so_record = session_options(threads=spec.threads, optimization="all")
    ort.set_default_logger_severity(3)
    before = _engine_files(engines)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(
        export["path"], sess_options=so,
        providers=[(TRT_PROVIDER, trt_options), (CUDA_PROVIDER, {"device_id": device_id}), "CPUExecutionProvider"],
    )  # fmt: skip
    build_ms = (time.perf_counter() - t0) * 1e3
    check_session_provider(list(sess.get_providers()))
    engine_cached = not (_engine_files(engines) - before)

    name = sess.get_inputs()[0].name
    x_np = np.ascontiguousarray(example.detach().cpu().float().numpy())
    x_dev = ort.OrtValue.ortvalue_from_numpy(x_np, "cuda", device_id)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, x_dev)
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", device_id)

    def run():
        sess.run_with_iobinding(binding)
        return binding

    def sync():
        binding.synchronize_outputs()
        torch.cuda.synchronize()

    def predict(batch):
        outs = sess.run(None, {name: np.ascontiguousarray(batch.detach().cpu().float().numpy())})
        return torch.from_numpy(np.asarray(outs[0])).float()

    info: dict[str, Any] = {
        "runtime": "TensorRT (onnxruntime TensorrtExecutionProvider)",
        "provider": sess.get_providers()[0],
        "provider_requested": TRT_PROVIDER,
        "session_providers": list(sess.get_providers()),
        "trt_options": {k: v for k, v in trt_options.items() if k != "device_id"},
        "session_options": so_record,
        "io_binding": True,
        "export_ms": export["export_ms"],
        "export_cached": export["export_cached"],
        "export_path": export["path"],
        "artifact_bytes": export["file_bytes"],
        "session_create_ms": build_ms,
        "engine_build_ms": build_ms,
        "engine_cached": engine_cached,
        "engine_cache_dir": str(engines),
        "onnxruntime": ort.__version__,
        "precision_path": {"fp16": "trt_fp16_enable", "int8": "QDQ graph, trt_int8_enable"}.get(spec.precision, "fp32"),
    }
    if calibration is not None:
        info.update(calibration=calibration.info, quantize=export["quantize"], quantize_ms=export["quantize_ms"])
    return Prepared(run=run, sync=sync, predict=predict, info=info)


BACKEND = TensorRTBackend()
