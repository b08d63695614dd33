"""Every CUDA path of cnnbench, checked on a real GPU in one run (benchmarks/gpu_check.sh).

Runs from the checkout (PYTHONPATH=checkout, no `pip install`) on whatever torch the machine
has, which may differ from the pinned one. It imports only what the checks need: torch, and
torchvision for the default model (else a seed model), onnxruntime when present; no rich,
PyYAML or fvcore. Each check is one function returning a row: PASS / FAIL / SKIP, the figures
it measured and a note. A check that raises is a FAIL with its first line; the others still
run. Printed as a plain table, and written as JSON and text to `--out` (default $OUT, if set).

Checks (on `--device cuda`, the default):
  events_vs_sync    the same case timed with CUDA events and with synchronize + host clock:
                    medians agree within 2%
  warmup_excluded   first call and warmup are outside the samples and the energy window; the
                    window's length matches the samples' total time
  peak_memory       torch.cuda peak allocated after reset_peak_memory_stats >= weights + input
  fp16_parity, bf16_parity   autocast outputs vs eager fp32 within cnnbench's tolerances
  compile_default, compile_reduce_overhead   torch.compile (reduce-overhead = CUDA graphs):
                    compiles, no recompile in the timed region, parity
  onnxrt_cuda       ONNX Runtime's CUDA provider with IO binding when installed, else SKIP
                    naming the providers found
  nvml_energy       NVML energy over the timed window (J/image, W, idle W) and device state
  transfer_split    H2D / compute / D2H per call for eager, compile and onnxrt

Without CUDA every row is "skipped: no CUDA" and the exit code is 3. `--device cpu` runs the
checks that mean something on a CPU (a smoke test of this script; tests/test_gpu_check.py).
Exit codes: 0 every check passed or was skipped for a stated reason, 1 some check failed,
3 no CUDA device (nothing checked).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

EVENTS_AGREE = 0.02  # CUDA events vs synchronize + host clock, relative
WINDOW_AGREE = 0.10  # energy window length vs the samples' total time, relative
SPLIT_COMPUTE_AGREE = 0.25  # transfer split's compute median vs the device-resident median
EXIT_OK, EXIT_FAILED, EXIT_NO_CUDA = 0, 1, 3
CHECKS = (
    "events_vs_sync", "warmup_excluded", "peak_memory", "fp16_parity", "bf16_parity",
    "compile_default", "compile_reduce_overhead", "onnxrt_cuda", "nvml_energy", "transfer_split",
)  # fmt: skip


@dataclass
class Row:
    name: str
    status: str  # PASS | FAIL | SKIP
    note: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Context:
    """The model, the case and the prepared eager backend shared by the checks."""

    def __init__(self, args: argparse.Namespace):
        import torch

        from cnnbench.backends.common import example_batch
        from cnnbench.core.spec import CaseSpec, Measure

        self.args = args
        self.torch = torch
        self.device = args.device
        self.model_name = args.model
        try:
            import torchvision  # noqa: F401
        except ImportError:
            if self.model_name == "resnet18":
                self.model_name = "inception_bottleneck"  # a seed model: torch only
        from cnnbench.models.catalog import get_info

        info = get_info(self.model_name)
        size = tuple(args.input_size) if args.input_size else tuple(info.input_size)
        self.measure = Measure(warmup=args.warmup, min_time_s=args.min_time, max_time_s=args.max_time, target_rel_ci=0.005)
        self.spec = CaseSpec(
            model=self.model_name, batch_size=args.batch, input_size=size, device=self.device,
            threads=_threads(), measure=self.measure,
        )  # fmt: skip
        torch.set_num_threads(self.spec.threads)  # as the worker does: explicit, recorded
        torch.manual_seed(0)
        self.model = self.build()
        self.example = example_batch(self.spec)
        self._eager: Any = None
        self.eager_timing: Any = None
        self.compiled: dict[str, Any] = {}

    def build(self):
        from cnnbench.models.registry import build_model

        return build_model(self.model_name, input_size=self.spec.input_size)

    def spec_for(self, **changes: Any):
        return self.spec.replace(**changes)

    def prepare(self, backend: str, workdir: str, **changes: Any):
        from cnnbench.backends import get_backend

        spec = self.spec_for(backend=backend, **changes)
        model = self.build()
        model.load_state_dict(self.model.state_dict())
        return spec, model, get_backend(backend).prepare(model, self.example, spec, workdir=workdir)

    @property
    def eager(self):
        if self._eager is None:
            self._eager = self.prepare("eager", self.args.workdir)
        return self._eager


def _threads() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def _cuda_only(ctx: Context) -> str | None:
    return None if ctx.device == "cuda" else "skipped: needs CUDA (--device cpu)"


# ---------------------------------------------------------------------------------------------
# Checks


def check_events_vs_sync(ctx: Context) -> Row:
    if (why := _cuda_only(ctx)) is not None:
        return Row("events_vs_sync", "SKIP", why)
    from cnnbench.stats import basic as stats
    from cnnbench.measure.timing import time_callable

    torch = ctx.torch
    _, _, prepared = ctx.eager
    host = time_callable(prepared.run, measure=ctx.measure, sync=prepared.sync)
    ctx.eager_timing = host
    block = host.block_size
    samples: list[float] = []
    deadline = time.perf_counter() + ctx.measure.max_time_s
    while len(samples) < max(30, len(host.samples_ms)) and time.perf_counter() < deadline:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(block):
            prepared.run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / block)
    host_again = time_callable(prepared.run, measure=ctx.measure, sync=prepared.sync)  # drift check
    a, b, c = stats.median(host.samples_ms), stats.median(samples), stats.median(host_again.samples_ms)
    ref = (a + c) / 2  # host clock before and after the events, against drift
    diff = b / ref - 1
    figures = {
        "host_median_ms": a, "events_median_ms": b, "host_again_median_ms": c, "relative_difference": diff,
        "block_size": block, "host_samples": len(host.samples_ms), "event_samples": len(samples),
    }  # fmt: skip
    ok = abs(diff) <= EVENTS_AGREE
    note = f"events {b:.4f} ms vs host clock {ref:.4f} ms: {diff:+.2%} (limit ±{EVENTS_AGREE:.0%})"
    return Row("events_vs_sync", "PASS" if ok else "FAIL", note, figures)


def check_warmup_excluded(ctx: Context) -> Row:
    from cnnbench.measure.energy import CaseProbes
    from cnnbench.measure.timing import time_callable

    spec, _, prepared = ctx.eager
    probes = CaseProbes.for_spec(spec)
    calls = {"n": 0}
    marks: dict[str, int] = {}

    def run():
        calls["n"] += 1
        return prepared.run()

    def start():
        marks["start_calls"] = calls["n"]
        probes.window_start()

    def end():
        marks["end_calls"] = calls["n"]
        probes.window_end()

    t = time_callable(run, measure=ctx.measure, sync=prepared.sync, on_timed_start=start, on_timed_end=end)
    timed_calls = t.block_size * len(t.samples_ms)
    inside = marks["end_calls"] - marks["start_calls"]
    before = marks["start_calls"]
    warm_calls = 1 + sum(1 for _ in t.warmup_ms)  # at least first call + each warmup block
    rec = probes.record(images=spec.batch_size * timed_calls)
    energy = rec.get("energy", {})
    samples_s = sum(t.samples_ms) * t.block_size / 1e3
    figures = {
        "first_call_ms": t.first_call_ms, "warmup_blocks": len(t.warmup_ms), "calls_before_window": before,
        "calls_in_window": inside, "timed_calls": timed_calls, "samples_total_s": samples_s,
        "energy_window_s": energy.get("window_s"), "energy_available": energy.get("available"),
    }  # fmt: skip
    problems = []
    if inside != timed_calls:
        problems.append(f"{inside} calls inside the window, {timed_calls} timed")
    if before < warm_calls:
        problems.append(f"only {before} calls before the window, expected >= {warm_calls}")
    if probes.calls != {"start": 1, "end": 1}:
        problems.append(f"window hooks called {probes.calls}")
    if energy.get("available"):
        rel = energy["window_s"] / samples_s - 1
        figures["window_vs_samples"] = rel
        if not -0.01 <= rel <= WINDOW_AGREE:
            problems.append(f"energy window {energy['window_s']:.3f} s vs samples {samples_s:.3f} s ({rel:+.1%})")
    note = "; ".join(problems) or (
        f"first call {t.first_call_ms:.2f} ms and {len(t.warmup_ms)} warmup blocks outside {timed_calls} timed calls"
    )
    return Row("warmup_excluded", "FAIL" if problems else "PASS", note, figures)


def check_peak_memory(ctx: Context) -> Row:
    from cnnbench.measure.memory import MemoryTracker
    from cnnbench.measure.timing import time_callable

    spec, model, prepared = ctx.eager
    tracker = MemoryTracker(spec.device, backend="eager")
    tracker.start()
    time_callable(prepared.run, measure=ctx.measure.__class__(warmup=1, min_time_s=0.05, max_time_s=0.3), sync=prepared.sync)
    mem = tracker.stop()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    floor = params + ctx.example.numel() * ctx.example.element_size()
    key = "cuda_peak_allocated_bytes" if spec.device == "cuda" else "peak_rss_delta_bytes"
    peak = mem.get(key)
    figures = {**{k: v for k, v in mem.items() if isinstance(v, (int, float))}, "param_bytes": params, "floor_bytes": floor}
    if peak is None:
        return Row("peak_memory", "FAIL", f"{key} not recorded", figures)
    if spec.device != "cuda":
        return Row("peak_memory", "PASS", f"{key} {peak / 2**20:.1f} MiB (CPU: RSS growth, no floor checked)", figures)
    ok = peak >= floor
    return Row("peak_memory", "PASS" if ok else "FAIL", f"peak allocated {peak / 2**20:.1f} MiB vs weights+input {floor / 2**20:.1f} MiB", figures)


def _parity(ctx: Context, precision: str) -> Row:
    name = f"{precision}_parity"
    from cnnbench.backends.common import check_precision
    from cnnbench.core.errors import Unsupported
    from cnnbench.measure.parity import check_parity
    from cnnbench.measure.timing import time_callable

    try:
        check_precision(ctx.device, precision)
    except Unsupported as exc:
        return Row(name, "SKIP", f"skipped: {exc}")
    spec, model, prepared = ctx.prepare("eager", ctx.args.workdir, precision=precision)
    t = time_callable(prepared.run, measure=ctx.measure, sync=prepared.sync)
    parity = check_parity(spec, model, ctx.example, prepared)
    from cnnbench.stats import basic as stats

    figures = {k: parity.get(k) for k in ("max_abs_err", "max_rel_err", "top1_agreement", "tolerance")}
    figures["median_ms"] = stats.median(t.samples_ms)
    note = f"max rel err {parity.get('max_rel_err')} (tolerance {parity.get('tolerance')}), top-1 agreement {parity.get('top1_agreement')}"
    return Row(name, "PASS" if parity.get("ok") else "FAIL", note if parity.get("ok") else f"{note}: {parity.get('reason')}", figures)


def check_fp16_parity(ctx: Context) -> Row:
    return _parity(ctx, "fp16")


def check_bf16_parity(ctx: Context) -> Row:
    return _parity(ctx, "bf16")


def _compile(ctx: Context, mode: str) -> Row:
    name = f"compile_{mode.replace('-', '_')}"
    if ctx.device != "cuda" and not ctx.args.with_compile:
        return Row(name, "SKIP", "skipped: torch.compile on CPU is slow (pass --with-compile)")
    from cnnbench.stats import basic as stats
    from cnnbench.measure.parity import check_parity
    from cnnbench.measure.timing import time_callable

    options = () if mode == "default" else (("mode", mode),)
    spec, model, prepared = ctx.prepare("compile", str(Path(ctx.args.workdir) / f"compile-{mode}"), options=options)
    t = time_callable(prepared.run, measure=ctx.measure, sync=prepared.sync)
    warnings = prepared.after_timing() if prepared.after_timing else []
    parity = check_parity(spec, model, ctx.example, prepared)
    ctx.compiled[mode] = (spec, model, prepared, t)
    figures = {
        "compile_first_call_ms": t.first_call_ms, "median_ms": stats.median(t.samples_ms),
        "graphs": prepared.info.get("graphs"), "graph_breaks": prepared.info.get("graph_breaks"),
        "recompiles_in_timed_region": prepared.info.get("recompiles_in_timed_region"),
        "parity_max_rel_err": parity.get("max_rel_err"), "torch": prepared.info.get("torch"),
    }  # fmt: skip
    if ctx.eager_timing is not None:
        figures["speedup_vs_eager"] = stats.median(ctx.eager_timing.samples_ms) / figures["median_ms"]
    problems = list(warnings)
    if not parity.get("ok"):
        problems.append(f"parity: {parity.get('reason')}")
    note = "; ".join(problems) or (
        f"compiled in {t.first_call_ms / 1e3:.1f} s, median {figures['median_ms']:.4f} ms, no recompile, parity ok"
    )
    return Row(name, "FAIL" if problems else "PASS", note, figures)


def check_compile_default(ctx: Context) -> Row:
    return _compile(ctx, "default")


def check_compile_reduce_overhead(ctx: Context) -> Row:
    return _compile(ctx, "reduce-overhead")


def check_onnxrt_cuda(ctx: Context) -> Row:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Row("onnxrt_cuda", "SKIP", f"skipped: onnxruntime is not installed ({exc}); carry onnxruntime-gpu in .whl/")
    providers = list(ort.get_available_providers())
    figures: dict[str, Any] = {"onnxruntime": ort.__version__, "providers_available": providers}
    if ctx.device != "cuda" or "CUDAExecutionProvider" not in providers:
        where = "no CUDA device" if ctx.device != "cuda" else "no CUDAExecutionProvider"
        return Row("onnxrt_cuda", "SKIP", f"skipped: {where}; onnxruntime {ort.__version__} found {', '.join(providers)}", figures)
    from cnnbench.stats import basic as stats
    from cnnbench.measure.parity import check_parity
    from cnnbench.measure.timing import time_callable

    os.environ.setdefault("CNNBENCH_CACHE_DIR", str(Path(ctx.args.workdir) / "cache"))
    spec, model, prepared = ctx.prepare("onnxrt", ctx.args.workdir, options=(("exporter", ctx.args.exporter),))
    t = time_callable(prepared.run, measure=ctx.measure, sync=prepared.sync)
    parity = check_parity(spec, model, ctx.example, prepared)
    ctx.compiled["onnxrt"] = (spec, model, prepared, t)
    info = prepared.info
    figures.update({
        "provider": info.get("provider"), "io_binding": info.get("io_binding"), "median_ms": stats.median(t.samples_ms),
        "session_create_ms": info.get("session_create_ms"), "export_ms": info.get("export_ms"),
        "parity_max_rel_err": parity.get("max_rel_err"),
    })  # fmt: skip
    ok = info.get("provider") == "CUDAExecutionProvider" and info.get("io_binding") and parity.get("ok")
    note = f"provider {info.get('provider')}, IO binding {info.get('io_binding')}, median {figures['median_ms']:.4f} ms, parity {'ok' if parity.get('ok') else parity.get('reason')}"
    return Row("onnxrt_cuda", "PASS" if ok else "FAIL", note, figures)


def check_nvml_energy(ctx: Context) -> Row:
    if (why := _cuda_only(ctx)) is not None:
        return Row("nvml_energy", "SKIP", why)
    from cnnbench.measure.energy import CaseProbes
    from cnnbench.core.spec import Measure
    from cnnbench.measure.timing import time_callable

    spec, _, prepared = ctx.eager
    probes = CaseProbes.for_spec(spec)
    probes.measure_idle()
    measure = Measure(warmup=ctx.measure.warmup, min_time_s=max(2.0, ctx.measure.min_time_s), max_time_s=3.0, target_rel_ci=0.0001)
    t = time_callable(prepared.run, measure=measure, sync=prepared.sync, on_timed_start=probes.window_start, on_timed_end=probes.window_end)
    images = spec.batch_size * t.block_size * len(t.samples_ms)
    rec = probes.record(images=images)
    energy, state = rec["energy"], rec.get("device_state", {})
    figures = {"energy": energy, "device_state": state, "warnings": probes.warnings()}
    if not energy.get("available"):
        return Row("nvml_energy", "FAIL", f"energy unavailable: {energy.get('reason')}", figures)
    gpu = state.get("gpu", {})
    start = gpu.get("start", {}) if isinstance(gpu, dict) else {}
    problems = []
    limit = start.get("power_limit_w")
    if not energy.get("reliable"):
        problems.append(f"unreliable: {energy.get('unreliable_reason')}")
    if limit and not 0 < energy["avg_w"] <= 1.2 * limit:
        problems.append(f"average {energy['avg_w']:.1f} W outside (0, 1.2 x {limit:.0f} W limit]")
    if not start.get("sm_clock_mhz"):
        problems.append(f"no SM clock read ({start.get('errors')})")
    note = "; ".join(problems) or (
        f"{energy['method']}: {energy['j_per_image'] * 1e3:.2f} mJ/image, {energy['avg_w']:.1f} W (idle "
        f"{energy.get('idle_w') or float('nan'):.1f} W), {energy['images_per_j']:.1f} images/J over {energy['window_s']:.2f} s; "
        f"SM {start.get('sm_clock_mhz')} MHz, {start.get('temperature_c')} C, limit {limit} W, "
        f"throttled {state.get('throttled')}, other processes {len(state.get('other_gpu_processes') or [])}"
    )
    return Row("nvml_energy", "FAIL" if problems else "PASS", note, figures)


def check_transfer_split(ctx: Context) -> Row:
    from cnnbench.stats import basic as stats
    from cnnbench.backends.transfer import measure_split

    spec, _, prepared = ctx.eager
    if ctx.device != "cuda":
        rec = measure_split(spec, prepared)
        ok = rec.get("applicable") is False and "host memory" in str(rec.get("reason"))
        return Row("transfer_split", "PASS" if ok else "FAIL", f"CPU: not applicable ({rec.get('reason')})", {"eager": rec})
    cases: dict[str, tuple[Any, Any, Any]] = {"eager": (spec, prepared, ctx.eager_timing)}
    for label, key in (("compile", "default"), ("onnxrt", "onnxrt")):
        if key in ctx.compiled:
            s, _, p, t = ctx.compiled[key]
            cases[label] = (s, p, t)
    figures: dict[str, Any] = {}
    problems = []
    for label, (s, p, t) in cases.items():
        rec = measure_split(s.replace(measure=s.measure.__class__(transfer=True)), p)
        figures[label] = rec
        if not rec.get("applicable"):
            problems.append(f"{label}: {rec.get('reason')}")
            continue
        parts = [rec[f"{n}_ms"]["median"] for n in ("h2d", "compute", "d2h")]
        if min(parts) <= 0:
            problems.append(f"{label}: a part measured <= 0 ms ({parts})")
        rec["h2d_gb_per_s"] = rec.get("input_bytes", 0) / (parts[0] / 1e3) / 1e9 if parts[0] > 0 else None
        if t is not None and t.samples_ms:
            resident = stats.median(t.samples_ms)
            rel = parts[1] / resident - 1
            rec["compute_vs_resident"] = rel
            if abs(rel) > SPLIT_COMPUTE_AGREE:
                problems.append(f"{label}: split compute {parts[1]:.4f} ms vs resident {resident:.4f} ms ({rel:+.0%})")
    summary = ", ".join(
        f"{k} {v['h2d_ms']['median']:.3f}/{v['compute_ms']['median']:.3f}/{v['d2h_ms']['median']:.3f} ms ({v['timer']})"
        for k, v in figures.items() if v.get("applicable")
    )  # fmt: skip
    return Row("transfer_split", "FAIL" if problems else "PASS", "; ".join(problems) or f"H2D/compute/D2H: {summary}", figures)


CHECK_FUNCTIONS: dict[str, Callable[[Context], Row]] = {name: globals()[f"check_{name}"] for name in CHECKS}


# ---------------------------------------------------------------------------------------------
# Running and reporting


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_count"] = torch.cuda.device_count()
            env["cudnn"] = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001
        env["torch_error"] = _line(exc)
    for name in ("torchvision", "onnxruntime", "pynvml"):
        try:
            module = __import__(name)
            env[name] = getattr(module, "__version__", "present")
        except Exception as exc:  # noqa: BLE001
            env[name] = f"missing ({type(exc).__name__})"
    try:
        import pynvml

        pynvml.nvmlInit()
        env["driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception as exc:  # noqa: BLE001
        env["driver"] = f"NVML unavailable ({_line(exc)})"
    return env


def render(rows: list[Row], env: dict[str, Any]) -> str:
    lines = ["cnnbench gpu_check", "  " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    width = max(len(r.name) for r in rows) if rows else 10
    lines.append(f"{'check'.ljust(width)}  result  seconds  note")
    for r in rows:
        lines.append(f"{r.name.ljust(width)}  {r.status.ljust(6)}  {r.seconds:7.1f}  {r.note}")
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "FAIL", "SKIP")}
    lines += ["", f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"]
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_outputs(out_dir: str | None, rows: list[Row], env: dict[str, Any], text: str) -> None:
    if not out_dir:
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"tool": "cnnbench gpu_check", "environment": env, "checks": [_finite(r.__dict__) for r in rows]}
    (out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "gpu_check.txt").write_text(text, encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Check every CUDA path of cnnbench on this machine's GPU.")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke test of this script")
    p.add_argument("--model", default="resnet18", help="registry model (default resnet18; a seed model without torchvision)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of samples per timed loop (min)")
    p.add_argument("--max-time", type=float, default=3.0, help="seconds of samples per timed loop (max)")
    p.add_argument("--only", action="append", choices=CHECKS, help="run only these checks (repeatable)")
    p.add_argument("--with-compile", action="store_true", help="also run torch.compile on --device cpu")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="legacy",
                   help="ONNX exporter for onnxrt_cuda (legacy needs no onnxscript)")  # fmt: skip
    p.add_argument("--out", default=os.environ.get("OUT") or None, help="write gpu_check.json/.txt here (default $OUT)")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch < 1 or args.warmup < 0 or not 0 < args.min_time <= args.max_time:
        print("gpu_check: --batch >= 1, --warmup >= 0 and 0 < --min-time <= --max-time", file=sys.stderr)
        return 2
    env = environment()
    names = list(args.only or CHECKS)
    if args.device == "cuda" and not env.get("cuda_available"):
        why = env.get("torch_error") or f"torch {env.get('torch')} sees no CUDA device"
        rows = [Row(n, "SKIP", f"skipped: no CUDA ({why})") for n in names]
        text = render(rows, env)
        print(text, end="")
        write_outputs(args.out, rows, env, text)
        return EXIT_NO_CUDA
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cnnbench-gpu-check-") as tmp:
        args.workdir = args.workdir or tmp
        os.environ.setdefault("CNNBENCH_CACHE_DIR", str(Path(args.workdir) / "cache"))
        rows: list[Row] = []
        try:
            ctx = Context(args)
        except Exception as exc:  # noqa: BLE001
            rows = [Row(n, "FAIL", f"setup failed: {_line(exc)}") for n in names]
            traceback.print_exc()
        else:
            order = [n for n in CHECKS if n in names]  # compile/onnxrt before the split that reuses them
            for name in order:
                t0 = time.perf_counter()
                try:
                    row = CHECK_FUNCTIONS[name](ctx)
                except Exception as exc:  # noqa: BLE001 - one check's failure never stops the others
                    row = Row(name, "FAIL", _line(exc), {"traceback": traceback.format_exc()[-2000:]})
                row.seconds = time.perf_counter() - t0
                rows.append(row)
                print(f"  {row.name}: {row.status} ({row.seconds:.1f} s) {row.note}", flush=True)
        text = render(rows, env)
        print("\n" + text, end="")
        figures = {r.name: r.figures for r in rows if r.figures}
        print(json.dumps(_finite(figures), indent=1, default=str))
        write_outputs(args.out, rows, env, text)
    return EXIT_FAILED if any(r.status == "FAIL" for r in rows) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
