"""AOTInductor: an ahead-of-time compiled PyTorch package (`.pt2`), cached on disk, then loaded.

`torch.export.export` (static shapes: the case's batch and input size, as a deployment
compiles a latency-critical model), then `torch._inductor.aoti_compile_and_package` writes a
package holding the generated C++/kernels and the weights, and `torch._inductor.aoti_load_package`
loads it into a runner that is what gets timed (`runner(x)` under `torch.inference_mode()`).

Freezing (`freezing` option, default on) is `torch._inductor.config.freezing`, as for the
`compile` backend: on CPU it is what lets inductor fold the weights and pre-pack them for oneDNN.

The package is cached under `$CNNBENCH_CACHE_DIR/aoti`, keyed by everything the ONNX export's
key holds (model, source and code digests, kwargs, input size, weights digest, torch/onnx
versions), plus the batch size (the package is compiled for one shape), the device, freezing,
and for int8 the calibration and torchao's version. `export_ms` is the time that made the
package (torch.export + AOT compile, + PT2E quantization for int8: `export_split_ms` has the
parts), recorded when it was made and carried when a later case reuses it (`export_cached`);
`session_create_ms` is the package load. Both are apart from every timed figure, and the inductor
scratch cache of a compile is a fresh directory under the case's working directory, so a compile
time is always a cold one.

Precision: fp32 on CPU and CUDA; int8 on CPU through PT2E with the X86InductorQuantizer
(`cnnbench.backends.quantize`); fp16/bf16 are `unsupported`: autocast is not captured by torch.export,
and a `.half()` model would be a different computation from the other backends' autocast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from cnnbench.backends import Prepared
from cnnbench.backends.common import check_device, device_sync
from cnnbench.core.errors import ExportFailed, Unsupported
from cnnbench.core.safeio import atomic_file
from cnnbench.backends.artifacts import cache_dir, output_to, package_version, write_json
from cnnbench.backends.onnxrt import export_error_message, export_key
from cnnbench.backends.quantize import calibration_data, pt2e_available, pt2e_quantize

__all__ = ["BACKEND", "DEFAULTS", "aoti_cache_dir", "PACKAGE_FORMAT_VERSION"]

DEFAULTS: dict[str, Any] = {"freezing": True}
PACKAGE_FORMAT_VERSION = 1


def aoti_cache_dir() -> Path:
    return cache_dir() / "aoti"


def check_precision_for_aoti(spec: Any) -> None:
    if spec.precision in ("fp16", "bf16"):
        raise Unsupported(
            f"{spec.precision} on aoti: autocast is not captured by torch.export, and a cast model would not be "
            "the computation the other backends run under autocast"
        )
    if spec.precision == "int8" and spec.device != "cpu":
        raise Unsupported("int8 on aoti is PT2E with the X86InductorQuantizer: x86 CPUs only")


def _first_line(exc: BaseException) -> str:
    return export_error_message(exc)


def build_package(model: Any, x: Any, spec: Any, *, freezing: bool, workdir: str, calibration: Any = None) -> dict[str, Any]:
    """The cached `.pt2` package for this case's shape, made now if missing.

    Returns:
        `path`, `export_ms`, `export_split_ms`, `export_cached`, `artifact_bytes`, `cache_key`,
        and for int8 `quantize`.

    Raises:
        ExportFailed: torch.export, the quantizer or the AOT compile rejected the model.
    """
    import torch

    key = {
        "package_format": PACKAGE_FORMAT_VERSION,
        **export_key(model, spec, exporter="aoti", opset=None, precision=spec.precision),
        "batch_size": spec.batch_size,
        "device": spec.device,
        "freezing": freezing,
        "calibration": calibration.key if calibration is not None else None,
        "torchao": package_version("torchao") if calibration is not None else None,
    }
    blob = json.dumps(key, sort_keys=True, default=repr)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.model)
    cache = aoti_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{safe}-{spec.precision}-b{spec.batch_size}-{spec.device}-{digest}.pt2"
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if isinstance(meta, dict) and meta.get("key") == blob and path.is_file():
            return {**meta["export"], "path": str(path), "export_cached": True}
    except (OSError, ValueError):
        pass

    # Inductor's scratch caches of this compile go to the case's directory: a cold compile.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(workdir).resolve() / "inductor-cache")
    import torch._inductor.config as inductor_config

    inductor_config.freezing = freezing
    log_path = Path(workdir) / "aoti-compile.log"
    split: dict[str, float] = {}
    quantize = None
    source = model
    if calibration is not None:

        source, q = pt2e_quantize(model, calibration, device=spec.device, log_path=log_path)
        split["quantize_ms"] = q["quantize_ms"]
        quantize = {**q["settings"], "torchao": q["torchao"]}
    # The package is written into a temporary file cnnbench.core.safeio made (a fresh name ending
    # in .pt2, as AOTInductor requires), renamed over `path` only when the compile succeeded.
    with atomic_file(path, what="write the AOTInductor package") as tmp:
        try:
            with output_to(log_path), torch.no_grad():
                t0 = time.perf_counter()
                exported = torch.export.export(source, (x,))
                split["torch_export_ms"] = (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()
                written = torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))
                split["aoti_compile_ms"] = (time.perf_counter() - t0) * 1e3
        except Exception as exc:
            raise ExportFailed(f"aoti: {_first_line(exc)}") from exc
        if Path(written) != tmp:  # pragma: no cover - torch returns the package_path it was given
            raise ExportFailed(f"aoti: the package was written to {written}, not to {tmp}")
    record = {
        "export_ms": sum(split.values()),
        "export_split_ms": split,
        "artifact_bytes": path.stat().st_size,
        "cache_key": digest,
        "quantize": quantize,
    }

    write_json(meta_path, {"key": blob, "export": record})
    return {**record, "path": str(path), "export_cached": False}


class AOTIBackend:
    name = "aoti"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import torch

        check_device(spec.device)
        check_precision_for_aoti(spec)
        if spec.channels_last:
            raise Unsupported("channels_last on aoti: the package is compiled for contiguous inputs")
        opts = {**DEFAULTS, **spec.option_dict}
        calibration = None
        if spec.precision == "int8":

            missing = pt2e_available()
            if missing:
                raise Unsupported(missing)
            calibration = calibration_data(spec)
        model = model.eval().to(spec.device).float()
        x = example.to(spec.device).contiguous()
        package = build_package(model, x, spec, freezing=bool(opts["freezing"]), workdir=workdir, calibration=calibration)

        t0 = time.perf_counter()
        try:
            runner = torch._inductor.aoti_load_package(package["path"])
        except Exception as exc:
            raise ExportFailed(f"aoti_load_package: {_first_line(exc)}") from exc
        load_ms = (time.perf_counter() - t0) * 1e3

        def run():
            with torch.inference_mode():
                return runner(x)

        def predict(batch):
            with torch.inference_mode():
                out = runner(batch.to(spec.device).float().contiguous())
            return out.float().cpu() if isinstance(out, torch.Tensor) else [t.float().cpu() for t in out]

        info: dict[str, Any] = {
            "runtime": "AOTInductor",
            "torch": torch.__version__,
            "freezing": bool(opts["freezing"]),
            "static_shape": [spec.batch_size, *spec.input_size],
            "export_ms": package["export_ms"],
            "export_split_ms": package["export_split_ms"],
            "export_cached": package["export_cached"],
            "export_path": package["path"],
            "artifact_bytes": package["artifact_bytes"],
            "session_create_ms": load_ms,
            "precision_path": "int8 PT2E (X86InductorQuantizer) + AOTInductor" if calibration is not None else "fp32",
        }
        if calibration is not None:
            info.update(calibration=calibration.info, quantize=package.get("quantize"),
                        quantize_ms=package["export_split_ms"].get("quantize_ms"))  # fmt: skip
        return Prepared(run=run, sync=device_sync(spec.device), predict=predict, info=info)


BACKEND = AOTIBackend()
