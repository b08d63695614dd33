"""Measured accuracy: top-1/top-5 of a prepared model on a dataset, with given weights.

What is measured here is labelled `kind: "measured"`; torchvision's published figures travel
separately (the record's `published`) and are never mixed in. Evaluation runs through a
backend's `Prepared.predict`, so every backend is scored on exactly what was timed, and always
after timing. `weights` loads state dicts, `datasets` opens and checks the datasets,
`evaluation` scores and compares backends, `progress` shows it. Nothing is ever downloaded;
torch is imported inside the functions, so `cnnbench.suite.schema` validates a suite without it.
docs/accuracy.md has the whole contract.
"""

from __future__ import annotations

from cnnbench.accuracy.datasets import (
    DATASET_KINDS,
    DIGITS_SPLIT,
    IMAGE_EXTENSIONS,
    INTERPOLATIONS,
    check_dataset_path,
    digits_tensors,
    load_dataset,
)
from cnnbench.accuracy.evaluation import (
    TOLERANCE_FRACTION,
    TOLERANCE_MIN_IMAGES,
    Evaluation,
    accuracy_difference,
    evaluate,
    prepare,
    tolerance_images,
)
from cnnbench.accuracy.progress import PROGRESS_FILE_ENV, progress_bar, read_progress
from cnnbench.accuracy.weights import is_torchvision_weights_name, load_weights, weights_path
from cnnbench.core.errors import AccuracyError

__all__ = [
    "AccuracyError",
    "DATASET_KINDS",
    "DIGITS_SPLIT",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "TOLERANCE_FRACTION",
    "TOLERANCE_MIN_IMAGES",
    "Evaluation",
    "check_dataset_path",
    "is_torchvision_weights_name",
    "weights_path",
    "load_weights",
    "load_dataset",
    "digits_tensors",
    "evaluate",
    "prepare",
    "tolerance_images",
    "accuracy_difference",
    "PROGRESS_FILE_ENV",
    "read_progress",
    "progress_bar",
]
