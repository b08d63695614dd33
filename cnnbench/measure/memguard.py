"""Memory: label every out-of-memory as `oom`, refuse what cannot fit, keep a runaway case small.

Three pieces here, each small and each usable on its own:

- the allocator failure messages (`cnnbench.core.errors.is_oom_message`, beside the rule that
  turns an exception into a status) label every such failure `oom`, and `--oom-retry` retries it.
- `oom_kill_count()` / `killed_by_oom_killer(...)`: a worker killed by SIGKILL that nobody in
  cnnbench killed is checked against the kernel's OOM killer: the `oom_kill` counter of the
  cgroup (v2 `memory.events`, which the worker shares with the runner) went up while it ran, or
  the kernel log (`/dev/kmsg`, where readable) says it killed that pid.
- `preflight(...)`: before a case is built, its parameters plus its activations (traced on the
  `meta` device: shapes only, no memory) at the case's batch and precision are compared with the
  memory available (psutil, or CUDA's free memory) and with `measure.memory_limit`. A case whose
  lower bound cannot fit is refused with `oom` and the estimate, instead of taking the host down.
- `apply_memory_limit(bytes)`: `measure: {memory_limit: 8GiB}` sets RLIMIT_DATA in the worker
  before torch is imported. RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 RLIMIT_DATA counts the
  private writable mappings, which is where malloc and the tensor allocators put their memory,
  and not the address space merely reserved (CUDA reserves tens of GB of virtual address space
  at start-up, jemalloc and glibc arenas reserve more), so RLIMIT_AS would fail CUDA and ONNX
  Runtime at start-up for a limit that the real usage is far below. Beyond the limit an
  allocation fails and the case ends `oom` in its own worker.
"""

from __future__ import annotations

import os
import re
from typing import Any

from cnnbench.core.units import fmt_bytes
from cnnbench.core.errors import CaseFailure

__all__ = [
    "oom_kill_count",
    "killed_by_oom_killer",
    "parse_bytes",
    "apply_memory_limit",
    "estimate_bytes",
    "preflight",
    "OOM_KILLER_MESSAGE",
]

OOM_KILLER_MESSAGE = "worker killed by the kernel OOM killer"

# ---------------------------------------------------------------------------------------------
# The kernel's OOM killer


def _counter_files(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> list[str]:
    """Where this process's cgroup counts OOM kills: v2 `memory.events`, v1 `memory.oom_control`
    (both have an `oom_kill N` line, v1 since Linux 4.13)."""
    out = []
    try:
        with open(proc_cgroup, encoding="ascii", errors="replace") as fh:
            lines = fh.read(64 * 1024).splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and line.startswith("0::"):  # v2: the unified hierarchy
            out.append(os.path.join(root, path.lstrip("/"), "memory.events"))
        elif "memory" in controllers.split(","):  # v1: the memory controller's hierarchy
            out.append(os.path.join(root, "memory", path.lstrip("/"), "memory.oom_control"))
    return out


def oom_kill_count(events_path: str | None = None) -> int | None:
    """The `oom_kill` counter of this process's cgroup, None if unreadable."""
    for path in [events_path] if events_path else _counter_files():
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read(8192)
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def _kmsg_scan(pid: int, kmsg: str = "/dev/kmsg", max_bytes: int = 4 << 20) -> tuple[bool, bool]:
    """(the kernel log records OOM kills at all, one of them is `pid`), read without blocking
    and bounded; (False, False) when it cannot be read."""
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False, False
    any_kill = re.compile(r"Killed process \d+")
    ours = re.compile(rf"Killed process {pid}\b")
    seen_kill = False
    seen = 0
    try:
        while seen < max_bytes:
            try:
                record = os.read(fd, 8192)  # one record per read
            except BlockingIOError:
                break
            except OSError:  # EPIPE: records overwritten while reading; go on
                continue
            if not record:
                break
            seen += len(record)
            text = record.decode("utf-8", "replace")
            if any_kill.search(text):
                seen_kill = True
                if ours.search(text):
                    return True, True
    finally:
        os.close(fd)
    return seen_kill, False


def killed_by_oom_killer(pid: int, returncode: int | None, before: int | None, *, after: int | None = None,
                         kmsg: str = "/dev/kmsg") -> str | None:
    """If a worker that died by SIGKILL was killed by the kernel's OOM killer, the evidence
    (for the error text), else None.

    Args:
        pid: the worker's pid.
        returncode: its exit status as subprocess reports it (-9 for SIGKILL).
        before: `oom_kill_count()` taken before the worker started.
        after: the counter now (read here when None).
        kmsg: the kernel log to search when the counter says nothing.
    """
    if returncode != -9:
        return None
    logged, ours = _kmsg_scan(pid, kmsg)
    if ours:  # the kernel log names the pid: the best evidence
        return f"kernel log: Killed process {pid}"
    if logged:  # the log records OOM kills, not this one: someone else's
        return None
    after = oom_kill_count() if after is None else after
    if before is not None and after is not None and after > before:  # the cgroup's counter moved
        return f"cgroup memory.events oom_kill {before} -> {after}"
    return None



# ---------------------------------------------------------------------------------------------
# Sizes

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MIN_MEMORY_LIMIT = 256 * 1024**2  # below this not even the interpreter and torch start
MAX_MEMORY_LIMIT = 1024**5


def parse_bytes(value: Any) -> int:
    """'8GiB', '512 MiB', '2GB', 1073741824 -> bytes. Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError("expected a size like '8GiB' or a number of bytes")
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"expected a size like '8GiB', '512MiB' or '2GB', got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise ValueError("expected a size like '8GiB' or a number of bytes")
    size = int(number * _UNITS[unit])
    if size < MIN_MEMORY_LIMIT:
        raise ValueError(f"must be at least 256MiB (the interpreter and torch need that), got {value!r}")
    if size > MAX_MEMORY_LIMIT:
        raise ValueError(f"is too large (at most 1PiB), got {value!r}")
    return size


def apply_memory_limit(limit_bytes: int | None) -> None:
    """Cap this process's data segment (RLIMIT_DATA; see the module docstring). Call before
    importing torch. Never raises the hard limit (an unprivileged process cannot)."""
    if not limit_bytes:
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    new = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (new, hard))


# ---------------------------------------------------------------------------------------------
# Pre-flight estimate

_BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def estimate_bytes(build: Any, input_size: tuple[int, int, int], *, batch: int, precision: str, train: bool) -> dict[str, int]:
    """A lower bound of a case's memory, without allocating any: the model is built on torch's
    `meta` device (shapes only) and run once at batch 1 with forward hooks on its leaf layers.

    Returns `param_bytes` (as stored: fp32, autocast keeps weights in fp32), the activations at
    `batch` and `precision` (`activation_bytes`: all leaf outputs, which a training step keeps
    for backward; `largest_activation_bytes`: the largest one, which inference must hold at
    least together with its input), and `estimate_bytes`: for inference params + input +
    largest activation, for training params x 2 (weights and gradients) + all activations.
    """
    import torch

    with torch.device("meta"):
        model = build()
    model.eval()
    bpe = _BYTES_PER_ELEMENT.get(precision, 4)
    sizes: list[int] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        outs = output if isinstance(output, (tuple, list)) else [output]
        sizes.append(sum(o.numel() * bpe for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty((1, *input_size), device="meta"))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() * 4 for p in {id(p): p for p in model.parameters()}.values())
    acts = sum(sizes) * batch
    largest = max(sizes, default=0) * batch
    input_bytes = batch * input_size[0] * input_size[1] * input_size[2] * bpe
    estimate = (2 * params + acts) if train else (params + input_bytes + largest)
    return {"param_bytes": params, "activation_bytes": acts, "largest_activation_bytes": largest,
            "estimate_bytes": estimate}


def available_bytes(device: str) -> tuple[int | None, str]:
    """Memory a new case can use on `device`, and where the figure comes from."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():  # no GPU or driver: the backend says `unsupported`, not this
            return None, ""
        free, _total = torch.cuda.mem_get_info()
        return int(free), "free CUDA memory"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "available host memory"
    except Exception:  # noqa: BLE001 - no psutil: no pre-flight
        return None, ""


# A CNN's activations sum to far less than this many times its input (VGG16: ~100x at 224x224),
# so a case whose params plus this bound fit in half the budget cannot fail the estimate: the
# meta-device trace (0.1-1 s per worker) is skipped for it.
_CRUDE_ACTIVATION_FACTOR = 400


def preflight(build: Any, spec: Any, *, params: int | None = None) -> str | None:
    """None when the case may fit; else the `oom` message with the estimate. Never fails a case
    for its own sake: an estimate that cannot be made (a model that cannot run on `meta`) says
    nothing.

    Args:
        build: builds the model (called under `torch.device("meta")`).
        spec: the case.
        params: the parameter count when known (from the counting cache): with it, a case far
            from any limit is passed without tracing.
    """
    limit = getattr(spec.measure, "memory_limit", None)
    available, where = available_bytes(spec.device)
    budgets = [(b, w) for b, w in ((available, where), (limit, "measure.memory_limit")) if b]
    if not budgets:
        return None
    if params is not None:
        c, h, w = spec.input_size
        crude = 8 * params + spec.batch_size * c * h * w * 4 * _CRUDE_ACTIVATION_FACTOR
        if crude < min(b for b, _ in budgets) / 2:
            return None
    try:
        est = estimate_bytes(build, spec.input_size, batch=spec.batch_size, precision=spec.precision,
                             train=spec.mode == "train")
    except Exception:  # noqa: BLE001
        return None
    for budget, what in budgets:
        if est["estimate_bytes"] > budget:
            kind = "params x 2 + activations (train)" if spec.mode == "train" else "params + input + largest activation"
            return (f"pre-flight: needs at least {fmt_bytes(est['estimate_bytes'])} ({kind}: params "
                    f"{fmt_bytes(est['param_bytes'])}, activations {fmt_bytes(est['activation_bytes'])} at batch "
                    f"{spec.batch_size} {spec.precision}), more than the {fmt_bytes(budget)} of {what}; not built")
    return None


def _case_failure() -> type:

    class DoesNotFit(CaseFailure):
        """The pre-flight estimate exceeds the memory available: the case ends `oom`, unbuilt."""

        status = "oom"

    return DoesNotFit


DoesNotFit = _case_failure()
