"""Evaluating top-1/top-5 through a backend's `Prepared.predict`, after timing, never inside it,
and the rule that flags a backend whose correct count differs from eager's."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from cnnbench.core.errors import AccuracyError, UserError, classify_exception
from cnnbench.core.text import one_line

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from cnnbench.core.spec import CaseSpec

from cnnbench.accuracy.datasets import SKIPPED_SHOWN, Dataset, load_dataset
from cnnbench.accuracy.progress import PROGRESS_FILE_ENV, ProgressFile, progress_bar, want_progress
from cnnbench.accuracy.weights import load_weights

__all__ = ["TOLERANCE_FRACTION", "TOLERANCE_MIN_IMAGES", "Evaluation", "evaluate", "prepare", "tolerance_images", "accuracy_difference"]

# A backend's measured accuracy is flagged when its correct count (top-1 or top-5) differs from
# eager's on the same images by more than this fraction of the images (0.1 percentage point),
# and never for a difference of a single image: a near-tie between two classes may legitimately
# flip under a reordered float reduction (compile's fused kernels, ONNX Runtime's own).
TOLERANCE_FRACTION = 0.001
TOLERANCE_MIN_IMAGES = 1


# Evaluation.


def evaluate(
    predict: Callable[[Any], Any],
    dataset: Dataset,
    *,
    batch_size: int,
    limit: int | None = None,
    fixed_batch: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Top-1 and top-5 of `predict` on `dataset`.

    Args:
        predict: a batch [B, C, H, W] (CPU float32) -> outputs [B, num_classes] (a backend's
            `Prepared.predict`, or any callable).
        dataset: from `load_dataset`.
        batch_size: images per `predict` call.
        limit: evaluate at most this many images (a prefix in the dataset's order; undecodable
            ones among them are skipped, so `total` may be less).
        fixed_batch: pad the last batch to `batch_size` (repeating its last image) and drop the
            padded outputs: for a backend prepared for one batch shape (ONNX export, compile).
        progress: a rich progress bar on stderr; default: when stderr is a terminal.

    Returns:
        `{kind: "measured", top1, top5 (percent), correct1, correct5, total, skipped,
        nonfinite_rows, batch_size, duration_s, dataset: {...}}`; with fewer than 5 classes,
        top-5 is top-k over all classes (100%).

    Raises:
        AccuracyError: the outputs are not [B, K], K differs from the dataset's class count, or
            a label is out of range.
    """
    import torch

    if batch_size < 1:
        raise AccuracyError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise AccuracyError(f"limit must be at least 1, got {limit}")
    started = time.perf_counter()
    planned = len(dataset) if limit is None else min(limit, len(dataset))
    correct1 = correct5 = total = nonfinite = 0
    skipped: list[tuple[str, str]] = []
    skipped_count = 0
    bar = progress_bar(planned, dataset.describe().get("name", dataset.kind)) if want_progress(progress) else None
    side = os.environ.get(PROGRESS_FILE_ENV)
    to_file = ProgressFile(side, planned) if side and bar is None else None
    try:
        for batch in dataset.batches(batch_size, limit):
            skipped_count += len(batch.skipped)
            skipped.extend(batch.skipped[: max(0, SKIPPED_SHOWN - len(skipped))])
            n = int(batch.images.shape[0])
            if n:
                x = batch.images
                if fixed_batch and n < batch_size:
                    pad = x[-1:].expand(batch_size - n, *x.shape[1:])
                    x = torch.cat([x, pad])
                out = _as_tensor(predict(x))[:n]
                _check_outputs(out, n, dataset, batch.labels)
                k = min(5, out.shape[1])
                top = out.topk(k, dim=1).indices
                hits = top == batch.labels.view(-1, 1)
                correct1 += int(hits[:, 0].sum())
                correct5 += int(hits.any(dim=1).sum())
                nonfinite += int((~torch.isfinite(out)).any(dim=1).sum())
                total += n
            if bar is not None:
                bar[0].advance(bar[1], n + len(batch.skipped))
            if to_file is not None:
                to_file.advance(n + len(batch.skipped))
    finally:
        if bar is not None:
            bar[0].stop()
    if total == 0:
        raise AccuracyError(f"no image could be evaluated ({skipped_count} skipped as undecodable)")
    return {
        "kind": "measured",
        "top1": 100.0 * correct1 / total,
        "top5": 100.0 * correct5 / total,
        "correct1": correct1,
        "correct5": correct5,
        "total": total,
        "skipped": skipped_count,
        "skipped_examples": [f"{p}: {r}" for p, r in skipped],
        "nonfinite_rows": nonfinite,
        "batch_size": batch_size,
        "limit": limit,
        "duration_s": time.perf_counter() - started,
        "dataset": dataset.describe(),
    }


def _as_tensor(out: Any) -> "torch.Tensor":
    import torch

    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not torch.is_tensor(out):
        out = torch.as_tensor(out)
    return out.detach().float().cpu()


def _check_outputs(out: "torch.Tensor", n: int, dataset: Dataset, labels: "torch.Tensor") -> None:
    if out.dim() != 2 or out.shape[0] != n:
        raise AccuracyError(f"the model's outputs are {list(out.shape)}, expected [{n}, num_classes] class scores")
    k = int(out.shape[1])
    if dataset.num_classes is not None and dataset.num_classes != k:
        what = f"{dataset.num_classes} class folders" if dataset.kind == "imagefolder" else f"{dataset.num_classes} classes"
        raise AccuracyError(f"the dataset has {what} but the model outputs {k} classes")
    top = int(labels.max()) if labels.numel() else -1
    if top >= k:
        raise AccuracyError(f"label {top} is out of range: the model outputs {k} classes")


# --------------------------------------------------------------------------------------------
# The worker's side: a case's `evaluation`.


@dataclass
class Evaluation:
    """A case's accuracy evaluation, prepared before timing and run after it.

    `prepare` loads the weights into the model (before the backend compiles or exports it) and
    indexes the dataset (so a bad path fails before anything is timed); `record` evaluates
    through the prepared backend once timing is over.
    """

    config: dict[str, Any]
    weights: dict[str, Any] | None
    dataset: Dataset | None

    def record(self, out: dict[str, Any], predict: Callable[[Any], Any], *, batch_size: int) -> None:
        """Evaluate and put the result on the run `out` as `accuracy`. A failure becomes the
        case's status (one line; a warning if the case already failed, e.g. parity), leaving the
        timing already in `out` for the record's runs."""
        if self.dataset is None:
            return
        limit = (self.config.get("dataset") or {}).get("limit")
        try:
            result = evaluate(predict, self.dataset, batch_size=batch_size, limit=limit, fixed_batch=True, progress=None)
        except Exception as exc:  # noqa: BLE001 - the case records it; the suite goes on

            text = one_line(exc)
            message = f"accuracy: {text if isinstance(exc, UserError) else f'{type(exc).__name__}: {text}'}"
            if out.get("status", "ok") == "ok":
                out["status"], out["error"] = classify_exception(exc), message
            else:  # the first failure (e.g. parity) stays the case's status
                out.setdefault("warnings", []).append(message)
            return
        result["weights"] = self.weights
        out["accuracy"] = result


def prepare(model: "nn.Module", spec: "CaseSpec") -> Evaluation | None:
    """Load the case's weights into `model` and open its dataset; None when it has neither."""
    if not spec.evaluation:
        return None
    if spec.mode != "inference":
        raise AccuracyError(f"accuracy is measured on inference cases, not {spec.mode} (the training steps change the weights)")
    config = json.loads(spec.evaluation)
    weights_name = config.get("weights")
    weights = load_weights(model, weights_name) if weights_name else None
    dataset = None
    if config.get("dataset"):
        model_name = None if spec.source else spec.model
        dataset = load_dataset(config["dataset"], input_size=spec.input_size, weights=weights_name, model=model_name)
    return Evaluation(config, weights, dataset)


# --------------------------------------------------------------------------------------------
# Comparing backends.


def tolerance_images(total: int) -> int:
    """How many images a backend's correct count may differ from eager's by (see
    TOLERANCE_FRACTION): 0.1% of the images, at least one."""
    return max(TOLERANCE_MIN_IMAGES, math.floor(TOLERANCE_FRACTION * total))


def accuracy_difference(acc: dict[str, Any], ref: dict[str, Any]) -> str | None:
    """Why `acc` (a backend) differs from `ref` (eager on the same images) beyond tolerance, or
    None. Accuracies on different image counts are not compared (reported as such)."""
    if acc.get("total") != ref.get("total"):
        return f"evaluated {acc.get('total')} images, eager {ref.get('total')}: not comparable"
    allowed = tolerance_images(int(ref["total"]))
    problems = []
    for name, label in (("correct1", "top-1"), ("correct5", "top-5")):
        diff = int(acc[name]) - int(ref[name])
        if abs(diff) > allowed:
            problems.append(f"{label} {diff:+d} images vs eager (tolerance ±{allowed})")
    return "; ".join(problems) or None
