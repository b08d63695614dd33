"""The deployment table: per model, every backend x precision a deployment engineer could ship.

One row per (backend with its options, precision) of a model's inference cases in one
environment, with: latency at batch 1 (the median of the valid batch-1 case, and every other
row's speedup over the same model's fp32 eager batch-1 case, int8 included), throughput at the
best batch (the highest of the valid cases, with that batch), the artefact's size on disk
(`backend_info.artifact_bytes`: the `.onnx`, OpenVINO `.xml`+`.bin`, AOTInductor `.pt2`),
setup time (`CaseRow.setup`: export/convert/quantize/AOT compile + session or engine, or
torch.compile's first call; the PT2E quantization of an int8 compile case is added, labelled),
and accuracy: measured top-1 where a dataset was configured (int8 rows add the change against
the same model's fp32 eager top-1, in percentage points, measured in the same worker on the same
images), else torchvision's published top-1 labelled "published" (for fp32 weights: an int8
row says its own accuracy is unknown), and the calibration's label for int8. A combination with
no valid case shows its status and reason instead of numbers.

Shown when the results hold a deployment format (openvino, aoti, tensorrt or int8); computed
here from `ReportData`, rendered by the document's renderers like every other table.
"""

from __future__ import annotations

from typing import Any

from cnnbench.core.units import DASH, fmt_bytes, fmt_ms, fmt_pct, fmt_rate, fmt_speedup
from cnnbench.report.model import CaseRow, ReportData, backend_sort_key, published_figure
from cnnbench.report.blocks import Heading, P, Table, anchor

__all__ = ["DEPLOYMENT_BACKENDS", "artifact_bytes", "has_deployment", "deployment_rows", "deployment_section", "ran_on"]

DEPLOYMENT_BACKENDS = ("openvino", "aoti", "tensorrt")
HEADERS = (
    "Backend",
    "Precision",
    "Latency b1",
    "Throughput (best batch)",
    "Artefact",
    "Setup",
    "Top-1",
    "Status / notes",
)
_PRECISION_ORDER = {"fp32": 0, "bf16": 1, "fp16": 2, "int8": 3}


def has_deployment(data: ReportData) -> bool:
    return any((r.backend_name in DEPLOYMENT_BACKENDS or r.precision == "int8") and not r.is_train for r in data.rows)


def artifact_bytes(row: CaseRow) -> int | None:
    """Size on disk of the row's exported or compiled artefact, if it recorded one."""
    info = row.backend_info or {}
    for name in ("artifact_bytes", "export_file_bytes"):
        if isinstance(info.get(name), (int, float)):
            return int(info[name])
    return None


def ran_on(info: dict[str, Any]) -> str | None:
    """The devices or provider that really ran a case (OpenVINO's execution devices, ORT's provider)."""
    device = info.get("execution_devices") or info.get("provider")
    if not device:
        return None
    return ", ".join(map(str, device)) if isinstance(device, list) else str(device)


def _artifact(rows: list[CaseRow]) -> int | None:
    return next((size for size in map(artifact_bytes, rows) if size is not None), None)


def _setup(rows: list[CaseRow]) -> str:
    valid = sorted((r for r in rows if r.valid), key=lambda r: r.batch)
    for r in valid:
        ms, _how = r.setup
        if ms is None:
            continue
        quantize = r.backend_info.get("quantize_ms")
        extra = ""
        if r.backend_info.get("compile_in_first_call") and isinstance(quantize, (int, float)):
            ms += float(quantize)  # PT2E before torch.compile's first call
            extra = " + PT2E"
        cached = " (cached)" if r.backend_info.get("export_cached") else ""
        return f"{fmt_ms(ms)} ms{extra}{cached}"
    return DASH


def _accuracy(rows: list[CaseRow], precision: str) -> str:
    for r in rows:
        acc = r.measured_accuracy if r.valid else None
        if acc:
            text = f"{fmt_pct(float(acc['top1']))} measured"
            change = acc.get("change_vs_fp32_eager")
            if isinstance(change, dict) and isinstance(change.get("top1_pp"), (int, float)):
                text += f" ({float(change['top1_pp']):+.2f} pp vs fp32 eager)"
            return text
    pub = published_figure(next((r.published for r in rows if r.published), None))
    if pub is not None:
        if precision == "int8":
            return f"{fmt_pct(pub.top1)} published (fp32 weights; int8 not measured)"
        return f"{fmt_pct(pub.top1)} published"
    return DASH


def _notes(rows: list[CaseRow], precision: str) -> str:
    valid = [r for r in rows if r.valid]
    notes: list[str] = []
    if not valid:
        r = rows[0]
        reason = (r.invalid_reason if r.status == "ok" else r.error) or ""
        notes.append(f"{r.status}: {' '.join(str(reason).split())[:200]}" if reason else r.status)
    src = valid or rows
    info: dict[str, Any] = src[0].backend_info or {}
    if precision == "int8":
        label = (info.get("calibration") or {}).get("label")
        if label:
            notes.append(str(label))
    device = ran_on(info)
    if device and valid:
        notes.append(f"ran on {device}")
    return "; ".join(notes)


def deployment_rows(data: ReportData, env: str, model: str) -> list[tuple[tuple[str, ...], str]]:
    """(cells, row class) per backend x precision of `model` in environment `env`."""
    groups: dict[tuple[str, str], list[CaseRow]] = {}
    for r in data.rows_of(env, model):
        if not r.is_train:
            groups.setdefault((r.backend, r.precision), []).append(r)
    out = []
    eager_b1 = [r.median_ms for r in groups.get(("eager", "fp32"), []) if r.valid and r.batch == 1 and r.median_ms]
    reference = min(eager_b1) if eager_b1 else None  # the same model's fp32 eager latency at batch 1
    order = sorted(groups, key=lambda k: (backend_sort_key(k[0]), _PRECISION_ORDER.get(k[1], 9), k[1]))
    for backend, precision in order:
        rows = groups[(backend, precision)]
        valid = [r for r in rows if r.valid]
        b1 = [r for r in valid if r.batch == 1 and r.median_ms is not None]
        latency = f"{fmt_ms(min(r.median_ms for r in b1))} ms" if b1 else (DASH if not valid else "no batch-1 case")  # type: ignore[type-var]
        if b1 and reference and (backend, precision) != ("eager", "fp32"):
            latency += f" ({fmt_speedup(reference / min(r.median_ms for r in b1))} vs fp32 eager)"  # type: ignore[type-var]
        best = max(valid, key=lambda r: r.throughput_per_s or 0.0, default=None)
        tput = f"{fmt_rate(best.throughput_per_s)}/s (batch {best.batch_label})" if best and best.throughput_per_s else DASH
        size = _artifact(rows)
        cells = (
            backend,
            precision,
            latency,
            tput,
            fmt_bytes(size) if size is not None else DASH,
            _setup(rows),
            _accuracy(rows, precision),
            _notes(rows, precision),
        )
        out.append((cells, "" if valid else "invalid"))
    return out


def deployment_section(data: ReportData) -> list[Any]:
    """The report's "Deployment" blocks, or [] when no deployment format was measured."""

    if not has_deployment(data):
        return []
    blocks: list[Any] = [
        Heading(2, "Deployment", "deployment"),
        P(
            "Every backend x precision per model: latency at batch 1, throughput at the best batch measured, "
            "the artefact's size on disk, the one-off setup (export, conversion, quantization, AOT compile, "
            "session or engine; apart from every timed figure) and accuracy, measured on the configured dataset "
            "or published and so labelled. int8 is static post-training quantization with calibration "
            "(docs/backends.md); its parity tolerance against eager fp32 is its own (cnnbench.measure.parity)."
        ),
    ]
    for env in data.envs:
        for model in data.model_names(env.fingerprint):
            rows = deployment_rows(data, env.fingerprint, model)
            if not rows:
                continue
            title = model if len(data.envs) == 1 else f"{model} on {env.label}"
            blocks.append(Heading(3, f"Deployment: {title}", anchor(f"deployment {title}")))
            blocks.append(
                Table(
                    headers=HEADERS,
                    rows=tuple(c for c, _ in rows),
                    row_classes=tuple(k for _, k in rows),
                    numeric=(False, False, True, True, True, True, False, False),
                )
            )
    return blocks
