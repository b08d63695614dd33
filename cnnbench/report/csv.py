"""`results.csv`: one flat row per case, full precision, for spreadsheets and pandas.

Invalid rows (status not ok, or parity failed) keep their identity, status and error but leave
every timing column empty, so no tool can average them by accident. `batch_size` is the batch the
case asked for, `measured_batch_size` the one it ran (lower only after --oom-retry; throughput is
per it). `measured_*` is the case's own measured accuracy (through its backend), `accuracy_*` the
model's figure the report shows (kind says measured or published), `published_*` torchvision's.
"""

from __future__ import annotations

import csv as _csv
import io
from typing import Any

from cnnbench.report.model import EPOCH_DATASETS, CaseRow, ReportData, dataset_name, measured_figure
from cnnbench.core.inert import csv_cell
from cnnbench.report.deployment import artifact_bytes, ran_on
from cnnbench.results.blocks import energy_summary

__all__ = ["CSV_COLUMNS", "render_csv", "csv_record"]

_LATENCY_KEYS = ("median", "iqr", "mean", "std", "min", "max", "p5", "p25", "p75", "p90", "p95", "p99", "ci95_low", "ci95_high")
_MEMORY_KEYS = (
    "peak_rss_delta_bytes",
    "cuda_peak_allocated_bytes",
    "cuda_peak_reserved_bytes",
    "param_bytes",
    "activation_bytes",
)

CSV_COLUMNS: tuple[str, ...] = (
    "environment",
    "environment_id",
    "host",
    "source_file",
    "measured_on_source",
    "key",
    "model",
    "backend",
    "precision",
    "batch_size",
    "measured_batch_size",
    "input_size",
    "device",
    "threads",
    "channels_last",
    "mode",
    "status",
    "valid",
    "invalid_reason",
    "error",
    *(f"latency_{k}_ms" for k in _LATENCY_KEYS),
    "n_samples",
    "throughput_per_s",
    "speedup_vs_eager",
    "first_call_ms",
    "setup_ms",
    "setup_how",
    "warmup_total_ms",
    "params",
    "trainable_params",
    "gmacs",
    "gmacs_per_image",
    "gflops",
    "counter",
    "achieved_gflops_per_s",
    "peak_gflops",
    "pct_of_peak",
    *(f"memory_{k}" for k in _MEMORY_KEYS),
    "energy_j_per_image",
    "energy_above_idle_j_per_image",
    "energy_images_per_j",
    "energy_avg_w",
    "energy_idle_w",
    "energy_window_s",
    "energy_method",
    "energy_scope",
    "energy_reliable",
    "artifact_bytes",
    "artifact_cached",
    "ran_on",
    "quantize_ms",
    "calibration",
    "parity_ok",
    "parity_max_abs_err",
    "parity_max_rel_err",
    "parity_top1_agreement",
    "parity_tolerance",
    "measured_top1_pct",
    "measured_top5_pct",
    "measured_correct1",
    "measured_correct5",
    "measured_total",
    "measured_dataset",
    "measured_accuracy_vs_eager",
    "accuracy_kind",
    "accuracy_top1_pct",
    "accuracy_top5_pct",
    "accuracy_dataset",
    "published_acc1",
    "published_acc5",
    "published_dataset",
    "published_weights",
    "train_optimizer",
    "train_loss_first",
    "train_loss_last",
    *(f"epoch_{name}_s" for name, _, _ in EPOCH_DATASETS),
    "torch",
    "onnxruntime",
    "cpu_model",
    "gpu_name",
    "warnings",
)


def csv_record(data: ReportData, r: CaseRow) -> dict[str, Any]:
    env = data.env(r.env)
    lat = r.latency_ms or {}
    model = data.models.get((r.env, r.model))
    acc = model.accuracy if model else None
    parity = r.parity or {}
    published = r.published or {}
    measured = r.measured_accuracy if r.valid else None
    train = r.train or {}
    rec: dict[str, Any] = {
        "environment": env.label,
        "environment_id": env.fingerprint,
        "host": r.host,
        "source_file": r.source,
        "measured_on_source": r.origin,
        "key": r.key,
        "model": r.model,
        "backend": r.backend,
        "precision": r.precision,
        "batch_size": r.batch_size,
        "measured_batch_size": r.batch if r.valid else r.measured_batch_size,
        "input_size": "x".join(str(x) for x in r.input_size),
        "device": r.device,
        "threads": r.threads,
        "channels_last": r.channels_last,
        "mode": r.mode,
        "status": r.status,
        "valid": r.valid,
        "invalid_reason": r.invalid_reason,
        "error": r.error,
        **{f"latency_{k}_ms": lat.get(k) for k in _LATENCY_KEYS},
        "n_samples": lat.get("n"),
        "throughput_per_s": r.throughput_per_s,
        "speedup_vs_eager": r.speedup_vs_eager,
        "first_call_ms": r.first_call_ms if r.valid else None,
        "setup_ms": r.setup[0] if r.valid else None,
        "setup_how": r.setup[1] if r.valid else None,
        "warmup_total_ms": r.warmup_ms_total if r.valid else None,
        "params": r.params,
        "trainable_params": r.trainable_params,
        "gmacs": r.gmacs,
        "gmacs_per_image": r.gmacs_per_image,
        "gflops": r.gflops,
        "counter": r.counter,
        "achieved_gflops_per_s": r.achieved_gflops_per_s,
        "peak_gflops": r.peak_gflops,
        "pct_of_peak": r.pct_of_peak,
        **{f"memory_{k}": (r.memory.get(k) if r.valid else None) for k in _MEMORY_KEYS},
        **_energy_cells(r),
        **_deployment_cells(r),
        "parity_ok": parity.get("ok"),
        "parity_max_abs_err": parity.get("max_abs_err"),
        "parity_max_rel_err": parity.get("max_rel_err"),
        "parity_top1_agreement": parity.get("top1_agreement"),
        "parity_tolerance": parity.get("tolerance"),
        "measured_top1_pct": measured_figure(measured).top1 if measured else None,
        "measured_top5_pct": measured_figure(measured).top5 if measured else None,
        "measured_correct1": measured.get("correct1") if measured else None,
        "measured_correct5": measured.get("correct5") if measured else None,
        "measured_total": measured.get("total") if measured else None,
        "measured_dataset": dataset_name(measured) if measured else None,
        "measured_accuracy_vs_eager": r.accuracy_vs_eager if measured else None,
        "accuracy_kind": acc.kind if acc else None,
        "accuracy_top1_pct": acc.top1 if acc else None,
        "accuracy_top5_pct": acc.top5 if acc else None,
        "accuracy_dataset": acc.dataset if acc else None,
        "published_acc1": published.get("acc@1"),
        "published_acc5": published.get("acc@5"),
        "published_dataset": published.get("dataset"),
        "published_weights": published.get("weights"),
        "train_optimizer": r.optimizer,
        "train_loss_first": train.get("loss_first") if r.valid else None,
        "train_loss_last": train.get("loss_last") if r.valid else None,
        **{f"epoch_{name}_s": (r.epoch_seconds(n) if r.valid else None) for name, _, n in data.epoch_datasets},
        "torch": env.environment.get("torch"),
        "onnxruntime": env.environment.get("onnxruntime"),
        "cpu_model": env.environment.get("cpu_model"),
        "gpu_name": env.environment.get("gpu_name"),
        "warnings": "; ".join(r.warnings),
    }
    return rec


def _energy_cells(r: CaseRow) -> dict[str, Any]:
    """The energy block of a valid row over exactly its timed window (measured by cnnbench.measure.energy), else blanks."""

    e = energy_summary({"energy": r.energy}) if r.valid and isinstance(r.energy, dict) else None
    e = e or {}
    return {
        "energy_j_per_image": e.get("j_per_image"),
        "energy_above_idle_j_per_image": e.get("above_idle_j_per_image"),
        "energy_images_per_j": e.get("images_per_j"),
        "energy_avg_w": e.get("avg_w"),
        "energy_idle_w": e.get("idle_w"),
        "energy_window_s": e.get("window_s"),
        "energy_method": e.get("method"),
        "energy_scope": e.get("scope"),
        "energy_reliable": e.get("reliable") if e else None,
    }


def _deployment_cells(r: CaseRow) -> dict[str, Any]:
    """What the deployment table shows beside latency: the artefact on disk and whether it came
    from the cache, the device or provider that really ran, int8's quantization time and its
    calibration label (cnnbench.report.deployment reads the same backend_info fields)."""

    info = r.backend_info or {}
    size = artifact_bytes(r)
    calibration = info.get("calibration")
    return {
        "artifact_bytes": size,
        "artifact_cached": info.get("export_cached") if size is not None else None,
        "ran_on": ran_on(info) if r.valid else None,
        "quantize_ms": info.get("quantize_ms") if isinstance(info.get("quantize_ms"), (int, float)) else None,
        "calibration": calibration.get("label") if isinstance(calibration, dict) else None,
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-trip text: full precision
    return csv_cell(value)  # text that would start a formula gets a leading ' (OWASP)


def render_csv(data: ReportData) -> str:
    buf = io.StringIO()
    extra = tuple(f"epoch_{name}_s" for name, _, _ in data.epoch_datasets if f"epoch_{name}_s" not in CSV_COLUMNS)
    at = CSV_COLUMNS.index(f"epoch_{EPOCH_DATASETS[-1][0]}_s") + 1  # the user's sizes after the built-in ones
    writer = _csv.DictWriter(buf, fieldnames=CSV_COLUMNS[:at] + extra + CSV_COLUMNS[at:], lineterminator="\n")
    writer.writeheader()
    for r in data.rows:
        writer.writerow({k: _cell(v) for k, v in csv_record(data, r).items()})
    return buf.getvalue()
