"""Which backend x device x precision this machine can run, and why not the others.

`bench.py list backends` prints it. Every answer comes from the check the backend itself makes
before it builds anything (`common.check_precision`, each backend's precision and device
checks, `tensorrt.tensorrt_status`, `quantize.pt2e_available`), called here on a placeholder
case, so the list and a real run never disagree. A check that needs the model (an export, a
conversion) is not made: "yes" means the machine and libraries can run it, not that every model
exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cnnbench.core.errors import CaseFailure, Unsupported
from cnnbench.backends.aoti import check_precision_for_aoti
from cnnbench.backends.common import check_device, check_precision
from cnnbench.backends.onnxrt import check_precision_for_ort, cuda_usable
from cnnbench.backends.openvino import inference_precision
from cnnbench.backends.quantize import pt2e_available
from cnnbench.backends.tensorrt import tensorrt_status
from cnnbench.core.spec import BACKENDS, CaseSpec, PRECISIONS

__all__ = ["Support", "support_table", "render_support"]

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Support:
    backend: str
    device: str
    precision: str
    reason: str | None  # None: runs here

    @property
    def ok(self) -> bool:
        return self.reason is None


def _spec(backend: str, device: str, precision: str):
    return CaseSpec(model="lenet5", batch_size=1, input_size=(1, 32, 32), backend=backend, precision=precision, device=device)


def _eager(spec) -> None:
    check_device(spec.device)
    check_precision(spec.device, spec.precision)


def _compile(spec) -> None:
    check_device(spec.device)
    if spec.precision != "int8":
        check_precision(spec.device, spec.precision)
        return
    if spec.device != "cpu":
        raise Unsupported(f"PT2E int8 (X86InductorQuantizer) targets x86 CPUs, not {spec.device}")
    missing = pt2e_available()
    if missing:
        raise Unsupported(missing)


def _onnxrt(spec) -> None:
    import onnxruntime as ort

    check_device(spec.device)
    use_cuda = spec.device == "cuda" and cuda_usable()
    check_precision_for_ort(spec, use_cuda)
    if spec.device == "cuda" and not use_cuda:
        raise Unsupported(f"this onnxruntime build lacks the CUDA provider (available: {ort.get_available_providers()})")


def _openvino(spec) -> None:
    check_device(spec.device)
    try:
        import openvino as ov
    except ImportError as exc:
        raise Unsupported(f"the package openvino is not installed ({exc})") from None
    if spec.device != "cpu":
        raise Unsupported(f"OpenVINO has no {spec.device} device")

    inference_precision(spec.precision, [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")])
    if spec.precision == "int8":
        try:
            import nncf  # noqa: F401
        except ImportError as exc:
            raise Unsupported(f"int8 on openvino needs the package nncf ({exc})") from None


def _aoti(spec) -> None:
    check_device(spec.device)
    check_precision_for_aoti(spec)
    if spec.precision == "int8":
        missing = pt2e_available()
        if missing:
            raise Unsupported(missing)


def _tensorrt(spec) -> None:
    reason = tensorrt_status(spec.device)
    if reason:
        raise Unsupported(reason)
    if spec.precision == "bf16":
        raise Unsupported("bf16 on tensorrt: not enabled through ONNX Runtime's TensorRT provider here")


CHECKS: dict[str, Callable] = {
    "eager": _eager,
    "compile": _compile,
    "onnxrt": _onnxrt,
    "openvino": _openvino,
    "aoti": _aoti,
    "tensorrt": _tensorrt,
}


def support_table() -> list[Support]:
    """One entry per backend x device x precision, in spec order."""

    out = []
    for backend in BACKENDS:
        for device in DEVICES:
            for precision in PRECISIONS:
                try:
                    CHECKS[backend](_spec(backend, device, precision))
                    reason = None
                except CaseFailure as exc:
                    reason = str(exc)
                except (ImportError, OSError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                out.append(Support(backend, device, precision, reason))
    return out


def render_support(rows: list[Support]) -> list[str]:
    """Lines: `backend device: precisions that run`, then each other precision with its reason
    (one line for all of them when they share it)."""
    lines = []
    groups: dict[tuple[str, str], list[Support]] = {}
    for r in rows:
        groups.setdefault((r.backend, r.device), []).append(r)
    for (backend, device), items in groups.items():
        ok = [r.precision for r in items if r.ok]
        bad = [r for r in items if not r.ok]
        lines.append(f"{backend:9s} {device:5s} {'runs: ' + ', '.join(ok) if ok else 'runs: nothing here'}")
        reasons = {r.reason for r in bad}
        if bad and len(reasons) == 1 and not ok:
            lines.append(f"{'':16s}all precisions: {bad[0].reason}")
        else:
            for r in bad:
                lines.append(f"{'':16s}{r.precision}: {r.reason}")
    return lines
