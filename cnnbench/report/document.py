"""The report as a list of format-neutral blocks (headings, paragraphs, tables, figures).

`build_document` turns `ReportData` into blocks whose cells are already formatted text; the
Markdown and HTML renderers only escape and lay them out, so both always say the same thing.
"""

from __future__ import annotations

from typing import Any, Sequence

from cnnbench.core.text import one_line
from cnnbench.report.blocks import B, Block, Bullets, Figure, Heading, P, Span, Table, anchor
from cnnbench.core.units import (
    DASH,
    fmt_bytes,
    fmt_count,
    fmt_gflops,
    fmt_gmacs,
    fmt_latency,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    fmt_duration,
    fmt_speedup,
)
from cnnbench.report.model import (
    EPOCH_DATASETS,
    AccuracyFigure,
    CaseRow,
    EnvGroup,
    ModelSummary,
    ReportData,
    backend_sort_key,
    measured_figure,
    reference_row,
    unreliable_row,
)
from cnnbench.report.deployment import deployment_section
from cnnbench.report.energy import ENERGY_HEADER, energy_text, has_energy

__all__ = ["build_document", "CONVENTIONS"]


CONVENTIONS: tuple[tuple[str, str], ...] = (
    (
        "Latency",
        "the median of the per-call times of the timed samples (ms). Warmup calls run first and are "
        "excluded from every statistic; ± is the interquartile range (p75 − p25) of the same samples. "
        "Calls shorter than about 1 ms are timed in blocks of N calls and each sample is the block time / N.",
    ),
    ("Throughput", "batch size / median latency, in images per second."),
    (
        "Speedup over eager",
        "eager median / backend median, for the same model, batch size, precision, input size, device "
        "and threads, measured in the same environment.",
    ),
    (
        "First call",
        "the time of the first call, which includes compilation (torch.compile), export and session "
        "creation (ONNX Runtime) or autotuning; it is never part of the latency.",
    ),
    (
        "MACs and FLOPs",
        "MACs are multiply-accumulates, the unit of fvcore's FlopCountAnalysis and of torchvision's "
        "published \"GFLOPS\"; FLOPs = 2 × MACs (torch.utils.flop_counter's unit). GMACs are per image "
        "at the stated input size unless the column says otherwise; the counter is named per model.",
    ),
    (
        "Achieved GFLOP/s",
        "2 × MACs of the whole batch / median latency; % of peak divides it by the machine's peak, "
        "measured once per run with a large fp32 matrix multiply in the same worker settings, so it is "
        "given for fp32 cases only (an fp32 peak is not the ceiling of an int8 or fp16 case).",
    ),
    (
        "Parameters",
        "total (and trainable), counted on the model as built; each card says whether auxiliary heads "
        "(GoogLeNet/Inception) are included.",
    ),
    (
        "Memory",
        "measured: on CPU the peak RSS growth of the worker over its post-load baseline, on CUDA the "
        "peak allocated bytes after a reset (for ONNX Runtime, which does not allocate through torch, the "
        "device-level growth read from NVML); analytic: parameter bytes + the sum of activation bytes "
        "from forward hooks. MiB = 2^20 bytes.",
    ),
    (
        "Accuracy",
        "measured top-1/top-5 (correct/total images) on the named dataset when the run measured it, else "
        "published (torchvision weight metadata or timm's results tables, ImageNet-1K validation at the weights' crop); always "
        "labelled, and a measured figure is only compared with measured figures on the same dataset, a "
        "published one with published ones. A backend's measured accuracy is flagged (⚠) when its correct "
        "count differs from eager's on the same images by more than max(1, 0.1%) images.",
    ),
    (
        "Parity",
        "each non-eager (or non-fp32) case's outputs are compared with eager fp32 on the same seeded "
        "inputs: the largest error relative to the output scale (max |eager output|) must stay within the "
        "precision's tolerance (fp32 1e-3, 5e-3 on CUDA; fp16 3e-2; bf16 1e-1); top-1 agreement is shown. "
        "A case that fails it has status fail_accuracy and is invalid.",
    ),
    (
        "Batch",
        "\"16 (of 32)\" means the case asked for batch 32, ran out of memory and was measured at batch 16 "
        "(--oom-retry); its throughput, MACs and memory are for the batch measured, and its speedup is "
        "computed against eager at that batch.",
    ),
    (
        "Training",
        "a training case times one optimizer step per call (forward, cross-entropy loss, backward, "
        "optimizer step, zero_grad) in train() mode; step latency is its median and samples/s = batch / "
        "median. Time per epoch = ceil(images / batch) × median step latency at the case's input size, "
        "data loading excluded: ImageNet-1k has 1,281,167 training images, CIFAR-10 50,000.",
    ),
    (
        "Invalid rows",
        "a case whose status is not ok (including fail_accuracy), or whose parity check failed, is shown "
        "without numbers and listed under failed and invalid cases with its status and error.",
    ),
    (
        "Merged files",
        "rows are grouped by the environment each case was measured in (for a file written by bench.py "
        "merge, the environment its measured_on names): machine fingerprint and the torch, torchvision, "
        "onnxruntime, Python, CUDA versions. Different environments get separate tables and are never "
        "averaged. A case measured twice in the same environment shows the newest file's record.",
    ),
)


def build_document(
    data: ReportData, figures: Sequence[Figure] = (), *, title: str | None = None, extra: Sequence[Block] = ()
) -> list[Block]:
    """The report's blocks; `extra` (e.g. the model selection's section) follows the summary."""
    blocks: list[Block] = [Heading(1, title or "cnnbench report", "top")]
    blocks += _intro(data)
    blocks.append(Heading(2, "Summary", "summary"))
    for env in data.envs:
        if len(data.envs) > 1:
            blocks.append(Heading(3, f"Measured on {env.label}", anchor(f"summary {env.label}")))
        if any(not r.is_train for r in data.rows_of(env.fingerprint)):
            blocks.append(_summary_table(data, env))
        if any(r.is_train for r in data.rows_of(env.fingerprint)):
            blocks.append(_training_summary(data, env))

    blocks += list(extra)
    blocks += deployment_section(data)
    if figures:
        blocks.append(Heading(2, "Plots", "plots"))
        blocks += list(figures)
    blocks.append(Heading(2, "Models", "models"))
    for name in data.model_names():
        blocks += _model_card(data, name)
    blocks += _failed_section(data)
    blocks += _environment_section(data)
    blocks.append(Heading(2, "Conventions", "conventions"))
    blocks.append(Bullets(tuple(((("b", k + ":"), ("", " " + v))) for k, v in CONVENTIONS)))
    return blocks


def _intro(data: ReportData) -> list[Block]:
    n_valid = len(data.valid_rows)
    n_bad = len(data.rows) - n_valid
    files = ", ".join(f"{s.path} ({s.host}, {s.n_cases} cases)" for s in data.sources)
    out: list[Block] = [
        P(
            f"{len(data.rows)} cases from {len(data.sources)} results file{'s' if len(data.sources) != 1 else ''}: ",
            B(f"{n_valid} valid"),
            ", ",
            B(f"{n_bad} failed or invalid") if n_bad else "none failed",
            f". Models: {len(data.model_names())}. Files: {files}.",
        ),
        P(
            "Measured on: "
            + "; ".join(f"{e.label} ({_env_short(e)})" for e in data.envs)
            + (". Different environments are reported separately and never averaged." if len(data.envs) > 1 else "."),
        ),
    ]
    if n_bad:
        out.append(P("Failed and invalid cases are listed below with their status and error.", cls="warn"))
    return out


def _env_short(env: EnvGroup) -> str:
    e = env.environment
    hw = e.get("gpu_name") or e.get("cpu_model") or "unknown hardware"
    return f"{hw}, torch {e.get('torch') or '?'}"


def _acc_text(acc: AccuracyFigure | None) -> str:
    if acc is None:
        return DASH
    return f"{fmt_pct(acc.top1)} ({acc.kind})"


def _best(rows: list[CaseRow], key: str) -> CaseRow | None:
    """The fastest valid, reliable inference case at the smallest batch measured, or the highest
    throughput (a case flagged unreliable never drives the summary: `unreliable_row`)."""
    valid = [r for r in rows if r.valid and not r.is_train and not unreliable_row(r)]
    if not valid:
        return None
    if key == "latency":
        smallest = min(r.batch for r in valid)
        return min((r for r in valid if r.batch == smallest), key=lambda r: r.median_ms)  # type: ignore[arg-type,return-value]
    return max(valid, key=lambda r: r.throughput_per_s or 0.0)


def _no_best(rows: list[CaseRow]) -> str:
    if any(r.valid and not r.is_train for r in rows):
        return "none reliable (every valid case is flagged unreliable: see its warnings)"
    return DASH


def _summary_table(data: ReportData, env: EnvGroup) -> Table:
    rows, classes = [], []
    for name in data.model_names(env.fingerprint):
        m = data.models[(env.fingerprint, name)]
        mrows = [r for r in data.rows_of(env.fingerprint, name) if not r.is_train]
        if not mrows:
            continue
        fast = _best(mrows, "latency")
        tput = _best(mrows, "throughput")
        rows.append(
            (
                name,
                fmt_count(m.params),
                fmt_gmacs(m.gmacs_per_image),
                _acc_text(m.accuracy),
                f"{fmt_ms(fast.median_ms)} ms ({fast.backend} {fast.precision}, batch {fast.batch_label})" if fast else _no_best(mrows),
                f"{fmt_rate(tput.throughput_per_s)}/s ({tput.backend} {tput.precision}, batch {tput.batch_label})" if tput else _no_best(mrows),
                f"{sum(r.valid for r in mrows)}/{len(mrows)}",
            )
        )
        classes.append("" if all(r.valid for r in mrows) else "warn")
    return Table(
        headers=(
            "Model",
            "Params",
            "GMACs/image",
            "Top-1",
            "Lowest latency at the smallest batch",
            "Highest throughput",
            "Valid cases",
        ),
        rows=tuple(rows),
        row_classes=tuple(classes),
        numeric=(False, True, True, True, False, False, True),
    )


def _epochs_text(r: CaseRow, datasets: tuple[tuple[str, str, int], ...] = EPOCH_DATASETS) -> str:
    return ", ".join(f"{label} {fmt_duration(r.epoch_seconds(n))}" for _, label, n in datasets)


def _training_summary(data: ReportData, env: EnvGroup) -> Table:
    """Per training case: step latency, samples/s and how long one epoch would take."""
    rows, classes = [], []
    for r in data.rows_of(env.fingerprint):
        if not r.is_train:
            continue
        ok = r.valid
        rows.append(
            (
                r.model,
                r.backend,
                r.batch_label,
                r.precision,
                (r.optimizer or DASH),
                fmt_latency(r.median_ms, r.iqr_ms) if ok else _status_text(r),
                fmt_rate(r.throughput_per_s) if ok else DASH,
                *((fmt_duration(r.epoch_seconds(n)) if ok else DASH) for _, _, n in data.epoch_datasets),
            )
        )
        classes.append("" if ok else "invalid")
    return Table(
        headers=(
            "Model",
            "Backend",
            "Batch",
            "Precision",
            "Optimizer",
            "Step latency ms (median ± IQR)",
            "Samples/s",
            *(f"Epoch of {label} ({n:,} images)" for _, label, n in data.epoch_datasets),
        ),
        rows=tuple(rows),
        row_classes=tuple(classes),
        caption="Training steps (one call = forward + loss + backward + optimizer step); epoch time excludes data loading",
        numeric=(False, False, True, False, False, True, True) + (True,) * len(data.epoch_datasets),
    )


def _status_text(r: CaseRow) -> str:
    if not r.valid:
        return f"INVALID: {r.invalid_reason}" if r.status == "ok" else r.status
    return "ok ⚠" if r.warnings else "ok"


def _notes(r: CaseRow) -> str:
    notes = list(r.warnings)
    if r.accuracy_vs_eager and r.valid:
        notes.insert(0, f"⚠ accuracy differs from eager: {r.accuracy_vs_eager}")
    if not r.valid and r.error:
        notes.insert(0, one_line(r.error, limit=240))
    if r.origin:
        notes.append(f"from {r.origin}")
    return "; ".join(notes) or ""


def _top1_text(r: CaseRow) -> str:
    """This case's own measured top-1 with the counts, e.g. "69.75% (6,975/10,000)"; flagged with ⚠
    when it differs from eager's beyond tolerance; nothing for invalid rows."""
    acc = r.measured_accuracy
    if acc is None or not r.valid:
        return DASH
    fig = measured_figure(acc)
    text = fmt_pct(fig.top1)
    if acc.get("correct1") is not None and acc.get("total"):
        text += f" ({int(acc['correct1']):,}/{int(acc['total']):,})"
    return text + (" ⚠" if r.accuracy_vs_eager else "")


def _gflops_text(r: CaseRow) -> str:
    g = r.achieved_gflops_per_s
    if g is None:
        return DASH
    pct = r.pct_of_peak
    return fmt_gflops(g) + (f" ({fmt_pct(pct)})" if pct is not None else "")


def _memory_text(r: CaseRow) -> str:
    m = r.memory_measured
    return DASH if m is None else fmt_bytes(m[1])


def _train_memory_text(r: CaseRow) -> str:
    """A training step's peak with weights, gradients, optimizer state and activations
    (`memory.train_total_peak_bytes`); older records without it show the plain measured peak."""
    total = r.memory.get("train_total_peak_bytes")
    return fmt_bytes(int(total)) if isinstance(total, (int, float)) else _memory_text(r)


DETAIL_HEADERS = (
    "Backend",
    "Batch",
    "Precision",
    "Latency ms (median ± IQR)",
    "Throughput (img/s)",
    "Speedup vs eager",
    "Tail ms (p90 / p99)",
    "First call ms",
    "Compile/export ms",
    "Peak memory (measured)",
    "GFLOP/s (% of peak)",
    "Parity",
    "Status",
    "Measured on",
    "Notes",
)
TOP1_HEADER = "Top-1 measured (correct/total)"  # before Notes, when any case measured accuracy


def _setup_text(r: CaseRow) -> str:
    """Compile/export time, a cost paid once before the first timed call, with "(cached)" when
    the export was made by an earlier run; none for an invalid row, like its first call."""
    ms = r.setup[0] if r.valid else None
    if ms is None:
        return DASH
    return fmt_ms(ms) + (" (cached)" if r.backend_info.get("export_cached") else "")


def _tail_text(r: CaseRow) -> str:
    """p90 / p99 per call over every timed sample (the tail a latency bound is about)."""
    lat = r.latency_ms or {}
    p90, p99 = lat.get("p90"), lat.get("p99")
    if not isinstance(p90, (int, float)) or not isinstance(p99, (int, float)):
        return DASH
    return f"{fmt_ms(p90)} / {fmt_ms(p99)}"


def detail_row(r: CaseRow, *, top1: bool = False, energy: bool = False) -> tuple[str, ...]:
    """One case as the cells of a detail table; invalid rows carry no timing number."""
    ok = r.valid
    cells = [
        r.backend,
        r.batch_label,
        r.precision,
        fmt_latency(r.median_ms, r.iqr_ms) if ok else DASH,
        fmt_rate(r.throughput_per_s) if ok else DASH,
        fmt_speedup(r.speedup_vs_eager) if ok else DASH,
        _tail_text(r) if ok else DASH,
        fmt_ms(r.first_call_ms) if ok else DASH,
        _setup_text(r),
        _memory_text(r) if ok else DASH,
        _gflops_text(r) if ok else DASH,
        r.parity_label,
        _status_text(r),
        r.host,
    ]
    if top1:
        cells.append(_top1_text(r))
    if energy:

        cells.append(energy_text(r))
    cells.append(_notes(r))
    return tuple(cells)


TRAIN_HEADERS = (
    "Backend",
    "Batch",
    "Precision",
    "Optimizer",
    "Step latency ms (median ± IQR)",
    "Samples/s",
    "Speedup vs eager",
    "Forward / backward / optimizer ms",
    "Time per epoch",
    "Loss first → last",
    "Peak memory (measured, with weights)",
    "Status",
    "Measured on",
    "Notes",
)


def train_row(r: CaseRow, datasets: tuple[tuple[str, str, int], ...] = EPOCH_DATASETS) -> tuple[str, ...]:
    """One training case: step latency, samples/s, the step's split, epoch times, loss."""
    ok = r.valid
    train = r.train or {}
    detail = train.get("detail_ms") if isinstance(train.get("detail_ms"), dict) else {}
    split = DASH
    if ok and all(isinstance(detail.get(k), (int, float)) for k in ("forward", "backward", "optimizer")):
        split = " / ".join(fmt_ms(detail[k]) for k in ("forward", "backward", "optimizer"))
    first, last = train.get("loss_first"), train.get("loss_last")
    loss = f"{first:.3f} → {last:.3f}" if isinstance(first, (int, float)) and isinstance(last, (int, float)) else DASH
    return (
        r.backend,
        r.batch_label,
        r.precision,
        (r.optimizer or DASH),
        fmt_latency(r.median_ms, r.iqr_ms) if ok else DASH,
        fmt_rate(r.throughput_per_s) if ok else DASH,
        fmt_speedup(r.speedup_vs_eager) if ok else DASH,
        split,
        _epochs_text(r, datasets) if ok else DASH,
        loss if ok else DASH,
        _train_memory_text(r) if ok else DASH,
        _status_text(r),
        r.host,
        _notes(r),
    )


def _pivot(rows: list[CaseRow], cell, *, caption: str) -> Table:
    """Rows: (variant,) batch size; columns: backends side by side."""
    backends = sorted({r.backend for r in rows}, key=backend_sort_key)
    variants = sorted({r.variant_label for r in rows})
    keys = sorted({(r.variant_label, r.batch_size) for r in rows}, key=lambda k: (k[0], k[1]))
    by = {(r.variant_label, r.batch_size, r.backend): r for r in rows}
    out = []
    for v, b in keys:
        label = str(b) if len(variants) == 1 else f"{b} ({v})"
        cells = []
        for be in backends:
            r = by.get((v, b, be))
            text = DASH if r is None else (cell(r) if r.valid else _status_text(r))
            if r is not None and r.valid and r.batch != r.batch_size:  # --oom-retry lowered it
                text += f" (at batch {r.batch})"
            cells.append(text)
        out.append((label, *cells))
    return Table(
        headers=("Batch", *backends),
        rows=tuple(out),
        caption=caption,
        numeric=(True,) + (True,) * len(backends),
    )


def _model_card(data: ReportData, name: str) -> list[Block]:
    envs = [e for e in data.envs if (e.fingerprint, name) in data.models]
    m0 = data.models[(envs[0].fingerprint, name)]
    blocks: list[Block] = [Heading(3, name, anchor(f"model {name}"))]
    sizes = ", ".join("x".join(str(x) for x in s) for s in m0.input_sizes) or DASH
    params = fmt_count(m0.params)
    if m0.trainable_params is not None and m0.trainable_params != m0.params:
        params += f" ({fmt_count(m0.trainable_params)} trainable)"
    if m0.params is not None:
        params += f" = {m0.params:,}"
    if m0.aux_heads_included is not None:
        params += "; auxiliary heads " + ("included" if m0.aux_heads_included else "not included")
    compute = DASH
    pub = m0.published_meta or {}
    if m0.gmacs_per_image is not None:
        g = m0.gmacs_per_image
        small = f" ({fmt_gmacs(1000 * g)} MMACs)" if g < 0.1 else ""
        compute = f"{fmt_gmacs(g)} GMACs{small} per image = {fmt_gmacs(2 * g)} GFLOPs at {sizes}"
        if m0.counter:
            compute += f"; counter: {m0.counter}"
        cross = m0.crosscheck or {}
        if cross.get("counter") and isinstance(cross.get("gmacs"), (int, float)):
            compute += f", cross-checked with {cross['counter']}: {fmt_gmacs(cross['gmacs'])} GMACs"
            if isinstance(cross.get("disagreement"), (int, float)):
                compute += f" ({fmt_pct(100 * cross['disagreement'])} apart)"
        if isinstance(pub.get("gmacs"), (int, float)):
            crop = pub.get("crop_size")
            at = f" at {crop}x{crop}" if isinstance(crop, int) else ""
            compute += f"; torchvision publishes {fmt_gmacs(pub['gmacs'])} GMACs{at} (its \"GFLOPS\")"
    items: list[tuple[Span, ...]] = [
        (B("What:"), ("", " " + m0.description)),
        (B("Parameters:"), ("", " " + params)),
        (B("Compute:"), ("", " " + compute)),
        (B("Accuracy:"), ("", " " + _card_accuracy(m0))),
    ]
    training = _card_training(data, envs, name)
    if training:
        items.append((B("Training:"), ("", " " + training)))
    items.append((B("Measured on:"), ("", " " + "; ".join(e.label for e in envs))))
    blocks.append(Bullets(tuple(items)))
    for env in envs:
        rows = data.rows_of(env.fingerprint, name)
        infer = [r for r in rows if not r.is_train]
        train = [r for r in rows if r.is_train]
        if len(envs) > 1:
            blocks.append(Heading(4, f"{name} on {env.label}", anchor(f"model {name} {env.label}")))
        if infer:
            blocks.append(
                _pivot(infer, lambda r: fmt_latency(r.median_ms, r.iqr_ms), caption="Latency, ms (median ± IQR), by backend and batch size")
            )
            blocks.append(_pivot(infer, lambda r: fmt_rate(r.throughput_per_s), caption="Throughput, images/s, by backend and batch size"))
            top1 = any(r.measured_accuracy for r in infer)

            energy = has_energy(infer)  # a column only when some case measured energy
            headers = DETAIL_HEADERS[:-1] + ((TOP1_HEADER,) if top1 else ()) + ((ENERGY_HEADER,) if energy else ()) + DETAIL_HEADERS[-1:]
            numeric = (False, True, False, True, True, True, True, True, True, True, False, False, False)
            blocks.append(
                Table(
                    headers=headers,
                    rows=tuple(detail_row(r, top1=top1, energy=energy) for r in infer),
                    row_classes=tuple(_row_class(r) for r in infer),
                    caption="All inference cases",
                    numeric=numeric + ((True,) if top1 else ()) + ((True,) if energy else ()) + (False,),
                )
            )
        if train:
            blocks.append(
                Table(
                    headers=TRAIN_HEADERS,
                    rows=tuple(train_row(r, data.epoch_datasets) for r in train),
                    row_classes=tuple(_row_class(r) for r in train),
                    caption="Training steps: step latency (one optimizer step per call), samples/s, time per epoch",
                    numeric=(False, True, False, False, True, True, True, True, False, False, True, False, False, False),
                )
            )
        blocks += _memory_para(rows)
        blocks += _alternatives(data, env, name)
    return blocks


def _row_class(r: CaseRow) -> str:
    if not r.valid:
        return "invalid"
    return "warn" if r.warnings or r.accuracy_vs_eager else ""


def _card_accuracy(m: ModelSummary) -> str:
    """Measured (with the counts and the dataset) when the run measured it, else published;
    both labelled, never one presented as the other."""
    acc = m.accuracy
    if acc is None:
        return "not measured, none published"
    text = f"top-1 {fmt_pct(acc.top1)}" + (f", top-5 {fmt_pct(acc.top5)}" if acc.top5 is not None else "")
    if acc.kind == "published":
        text += f" — published for {acc.detail or 'the torchvision weights'} on {acc.dataset}"
        text += _crop_note(m)
        return text + " (not measured here)"
    text += f" — measured on {acc.dataset}" + (f": {acc.detail}" if acc.detail else "")
    if m.published is not None:
        whose = "timm" if m.published.detail.startswith("timm ") else "torchvision"  # report.model.published_figure
        text += f"; published ({whose}, {m.published.dataset}): top-1 {fmt_pct(m.published.top1)}"
        text += f" for {m.published.detail}" if m.published.detail else ""
    return text


def _crop_note(m: ModelSummary) -> str:
    """Where the published figure's crop is not this model's input size, say so."""
    crop = (m.published_meta or {}).get("crop_size")
    if not isinstance(crop, int) or isinstance(crop, bool):
        return ""
    text = f" at {crop}x{crop}"
    other = [s for s in m.input_sizes if len(s) == 3 and tuple(s[1:]) != (crop, crop)]
    if other:
        text += f"; the cases here use {', '.join('x'.join(str(x) for x in s) for s in other)}"
    return text


def _card_training(data: ReportData, envs: list[EnvGroup], name: str) -> str:
    """How long training would take: per environment, the fastest valid training step's epochs."""
    parts = []
    for env in envs:
        train = [r for r in data.rows_of(env.fingerprint, name, valid_only=True) if r.is_train]
        if not train:
            continue
        best = min(train, key=lambda r: r.epoch_seconds(data.epoch_datasets[0][2]) or float("inf"))
        where = f" on {env.label}" if len(envs) > 1 else ""
        parts.append(
            "one epoch would take "
            + ", ".join(
                f"{fmt_duration(best.epoch_seconds(n))} for {label} ({n:,} images)" for _, label, n in data.epoch_datasets
            )
            + f"{where} at the fastest step measured ({best.backend}, {(best.optimizer or DASH)}, batch {best.batch_label}, "
            f"{best.precision}, {'x'.join(str(x) for x in best.input_size)}: {fmt_ms(best.median_ms)} ms/step, "
            f"{fmt_rate(best.throughput_per_s)} samples/s); data loading excluded"
        )
    if not parts and any(r.is_train for e in envs for r in data.rows_of(e.fingerprint, name)):
        return "no training case of this model is valid"
    return "; ".join(parts)


def _memory_para(rows: list[CaseRow]) -> list[Block]:
    valid = [r for r in rows if r.valid]
    param = next((r.memory.get("param_bytes") for r in valid if r.memory.get("param_bytes") is not None), None)
    param_note = ""
    if param is None:  # the worker did not record it: parameters are fp32 (autocast keeps them so)
        param = next((4 * r.params for r in valid if r.params), None)
        param_note = " (fp32, 4 bytes each)"
    acts: dict[int, Any] = {}
    for r in sorted(valid, key=lambda r: (r.is_train, r.backend != "eager")):
        if r.memory.get("activation_bytes") is not None:
            acts.setdefault(r.batch, r.memory["activation_bytes"])
    measured = [r for r in valid if r.memory_measured]
    if param is None and not acts and not measured:
        return [P(B("Memory:"), " not measured.")]
    parts: list[str] = []
    if param is not None:
        parts.append(f"parameters {fmt_bytes(param)}{param_note}")
    if acts:
        parts.append("activations (sum over layers) " + ", ".join(f"batch {b}: {fmt_bytes(a)}" for b, a in sorted(acts.items())))
    if measured:
        kinds = sorted({r.memory_measured[0] for r in measured})  # type: ignore[index]
        hi = max(measured, key=lambda r: r.memory_measured[1])  # type: ignore[index]
        parts.append(
            f"highest measured peak {fmt_bytes(hi.memory_measured[1])} ({hi.backend}, batch {hi.batch_label}"  # type: ignore[index]
            f"{', training step' if hi.is_train else ''}; {', '.join(kinds)})"
        )
    return [P(B("Memory:"), " " + "; ".join(parts) + ".")]


def _alternatives(data: ReportData, env: EnvGroup, name: str) -> list[Block]:
    alts = data.alternatives.get((env.fingerprint, name), [])
    ref = reference_row(data.rows_of(env.fingerprint, name))
    if ref is None:
        return [P(B("Closest alternatives:"), " none (no valid case of this model).")]
    config = f"{ref.backend}, batch {ref.batch}, {ref.precision}, {ref.device} t{ref.threads}"
    if unreliable_row(ref):
        return [P(B("Closest alternatives:"), f" not compared: this model's case at {config} is unreliable ({unreliable_row(ref)}).")]
    mine = data.models[(env.fingerprint, name)].accuracy
    if not alts:
        if mine is not None:
            text = (
                f" none in these results: no other model measured at the same setting ({config}) is faster "
                "at equal or better top-1 accuracy."
            )
        else:
            text = f" none faster in these results at the same setting ({config})."
        return [P(B("Closest alternatives:"), text)]
    blocks: list[Block] = [P(B("Closest alternatives"), f" (compared at {config}, same environment):")]
    if mine is not None and not any(a.relation.startswith("faster") for a in alts):
        blocks.append(
            P("None is faster at equal or better top-1 accuracy: no other model measured at the same setting beats it.")
        )
    items = []
    for a in alts:
        acc = "accuracy unknown"
        if a.top1 is not None:
            acc = f"top-1 {fmt_pct(a.top1)} vs {fmt_pct(a.reference_top1)} ({a.accuracy_kind} figures of both)"
        items.append(
            (
                B(a.model),
                ("", f" — {a.relation}: {fmt_ms(a.latency_ms)} ms vs {fmt_ms(a.reference_ms)} ms "
                f"({fmt_speedup(a.latency_ratio)} the latency), {acc}"),
            )
        )
    return blocks + [Bullets(tuple(items))]


def _failed_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Failed and invalid cases", "failed")]
    bad = data.invalid_rows
    if not bad:
        blocks.append(P("None: every case is ok and passed its parity check."))
    else:
        blocks.append(
            Table(
                headers=("Case", "Status", "Error or reason", "Measured on", "File"),
                rows=tuple(
                    (
                        r.key,
                        r.status if r.status != "ok" else "ok (invalid)",
                        one_line(r.error or "", limit=240) or (r.invalid_reason or ""),
                        r.host,
                        r.source + (f" ({r.origin})" if r.origin else ""),
                    )
                    for r in bad
                ),
                row_classes=tuple("invalid" for _ in bad),
            )
        )
    if data.superseded:
        blocks.append(Heading(3, "Superseded measurements", "superseded"))
        blocks.append(
            P("These cases were measured again in the same environment; the newer record is shown above.")
        )
        blocks.append(
            Table(
                headers=("Case", "Older file", "Shown instead", "Measured on"),
                rows=tuple((old.key, old.source, newer, old.host) for old, newer in data.superseded),
            )
        )
    return blocks


_ENV_FACTS: tuple[tuple[str, str], ...] = (
    ("CPU", "cpu_model"),
    ("CPU cores", "cpu_count"),
    ("Memory", "memory_bytes"),
    ("GPU", "gpu_name"),
    ("GPU driver", "driver"),
    ("CUDA (torch build)", "torch_cuda_build"),
    ("cuDNN", "cudnn"),
    ("OS", "os"),
    ("Python", "python"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("onnxruntime", "onnxruntime"),
    ("onnx", "onnx"),
    ("fvcore", "fvcore"),
    ("numpy", "numpy"),
    ("Machine fingerprint", "machine_fingerprint"),
)


def _env_value(env: EnvGroup, key: str) -> str:
    value = env.environment.get(key)
    if value is None or value == "":
        return DASH
    if key == "memory_bytes":
        return fmt_bytes(value)
    if key == "onnxruntime" and env.environment.get("onnxruntime_package"):
        return f"{value} ({env.environment['onnxruntime_package']})"
    return str(value)


def _environment_section(data: ReportData) -> list[Block]:
    headers = ("", *(e.label for e in data.envs))
    rows: list[tuple[str, ...]] = [
        ("Hosts", *(", ".join(e.hosts) for e in data.envs)),
        ("Results files", *(", ".join(e.sources) for e in data.envs)),
    ]
    for label, key in _ENV_FACTS:
        values = tuple(_env_value(e, key) for e in data.envs)
        if all(v == DASH for v in values):
            continue
        rows.append((label, *values))
    rows.append(("Project commit", *(", ".join(e.git_commits) or DASH for e in data.envs)))
    rows.append(
        (
            "Peak GFLOP/s",
            *(", ".join(fmt_gflops(p) for p in e.peak_gflops) or "not measured" for e in data.envs),
        )
    )
    rows.append(("Environment id", *(e.fingerprint for e in data.envs)))
    return [
        Heading(2, "Environments", "environments"),
        P(
            "Each column is one environment: files whose machine fingerprint and library versions match. "
            "Timings from different columns are never averaged."
        ),
        Table(headers=headers, rows=tuple(rows)),
    ]
