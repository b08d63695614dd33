"""Measured accuracy: top-1/top-5 of a prepared model on a dataset, with given weights.

What is measured here is labelled `kind: "measured"`; torchvision's published figures travel
separately (the record's `published`, from `models.registry.published_metadata`) and are never
mixed in. Evaluation runs through a backend's `Prepared.predict`, so eager, compile and ONNX
Runtime are scored on exactly what was timed, and always after timing, never inside it.

Datasets (the `dataset` mapping of a suite's `accuracy:`; see docs/accuracy.md):

- `imagefolder`: an ImageNet-style folder, one subfolder per class. Class names are sorted and
  numbered 0..K-1 (torchvision's `ImageFolder` convention, which gives ImageNet's indices for its
  synset folders); hidden entries are ignored, and so are files without an image extension
  (`IMAGE_EXTENSIONS`). Images are visited round-robin across classes (first image of each
  class, then the second...), so that `limit` takes a balanced prefix. An image that fails to
  decode is skipped and counted (`skipped`, the first few named with the reason) unless
  `strict: true`, which makes it an error. Transforms: torchvision's (`ImageClassification`:
  resize the shorter side with antialiasing, center crop, scale to [0, 1], normalize), with
  sizes, mean, std and interpolation taken from the weights' metadata (a torchvision weights
  name, else the model's DEFAULT weights for a torchvision model), each overridable by
  `transforms: {resize, crop, mean, std, interpolation, grayscale}`. Without metadata: resize to
  the input size, no crop, mean 0 and std 1 (pixels in [0, 1]). The crop is always the case's
  input size; when the metadata's crop differs, the resize is scaled by the same ratio.
- `digits`: scikit-learn's bundled `load_digits` (1,797 8x8 images, 0..16) split by
  `train_test_split(test_size=0.25, random_state=0, stratify=y)` into 1,347 train and 450 test
  images (`DIGITS_SPLIT`). Pixels are divided by 16, resized bilinearly to the model's input
  (`F.interpolate`, `align_corners=False`, no antialiasing), repeated over the input's
  channels, and normalized with mean 0.5 and std 0.5 (values in [-1, 1]) unless
  `transforms: {mean, std}` says otherwise. `examples/digits/train_lenet5.py` trains on the
  same tensors (`digits_tensors`).
- `tensors`: a `.pt` file holding `{"images": Tensor[N, C, H, W], "labels": Tensor[N]}`, already
  preprocessed: images are used as they are (as float32) and must have the case's input shape.

Weights: a local state-dict file (`.pt`/`.pth`; a `module.` or `_orig_mod.` prefix on every key
is stripped; a checkpoint holding the state dict under `state_dict` or `model` is accepted), or
a torchvision weights name such as `ResNet18_Weights.IMAGENET1K_V1`, looked up only in the local
torch hub cache (`torch.hub.get_dir()/checkpoints/<file name of the weights' URL>`). Nothing is
ever downloaded.

torch and torchvision are imported inside the functions: `suite.py` calls `check_dataset_path`
and `is_torchvision_weights_name` while validating a suite, without torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from cnnbench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from cnnbench.spec import CaseSpec

__all__ = [
    "AccuracyError",
    "DATASET_KINDS",
    "DIGITS_SPLIT",
    "IMAGE_EXTENSIONS",
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
]

# A worker has no terminal: a manager that shows progress names a file in this variable (`bench.py
# accuracy` does, on a terminal) and the worker's evaluation writes "done total" images to it.
PROGRESS_FILE_ENV = "CNNBENCH_PROGRESS_FILE"
_PROGRESS_EVERY_S = 0.2

DATASET_KINDS = ("imagefolder", "digits", "tensors")

# The documented digits split: sklearn.model_selection.train_test_split(X, y, **DIGITS_SPLIT,
# stratify=y). 1,797 images -> 1,347 train, 450 test (45 per class, within one).
DIGITS_SPLIT = {"test_size": 0.25, "random_state": 0}
DIGITS_MEAN = (0.5,)
DIGITS_STD = (0.5,)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")

# A backend's measured accuracy is flagged when its correct count (top-1 or top-5) differs from
# eager's on the same images by more than this fraction of the images (0.1 percentage point),
# and never for a difference of a single image: a near-tie between two classes may legitimately
# flip under a reordered float reduction (compile's fused kernels, ONNX Runtime's own).
TOLERANCE_FRACTION = 0.001
TOLERANCE_MIN_IMAGES = 1

_SKIPPED_SHOWN = 5  # undecodable images named in the record (all are counted)
_KEYS_SHOWN = 3  # mismatching state-dict keys named in an error
_TV_WEIGHTS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_Weights\.[A-Za-z0-9_]+$")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile's wrapper
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")  # published googlenet/inception heads


class AccuracyError(UserError):
    """A dataset or weights problem, as one line naming the path or the keys at fault."""


# --------------------------------------------------------------------------------------------
# Checks that need no torch (suite validation).


def is_torchvision_weights_name(text: str) -> bool:
    """Whether `text` names torchvision weights (`ResNet18_Weights.IMAGENET1K_V1`), not a file."""
    return bool(_TV_WEIGHTS_NAME.match(text)) and not os.path.exists(text)


def _visible(entries: Iterator[os.DirEntry]) -> list[os.DirEntry]:
    return [e for e in entries if not e.name.startswith(".")]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def check_dataset_path(kind: str, path: str) -> str | None:
    """What is wrong with a dataset path, as a message naming it, or None when it looks usable.

    Cheap: lists directories but reads no image. `digits` has no path.
    """
    if kind == "imagefolder":
        if not os.path.exists(path):
            return f"dataset folder not found: {path}"
        if not os.path.isdir(path):
            return f"an imagefolder dataset is a folder of class subfolders, but {path} is a file"
        try:
            with os.scandir(path) as it:
                classes = [e for e in _visible(it) if e.is_dir()]
            if not classes:
                return f"dataset folder is empty: no class subfolders in {path}"
            for entry in classes:
                with os.scandir(entry.path) as it:
                    if any(_is_image(e.name) and e.is_file() for e in _visible(it)):
                        return None
        except OSError as exc:
            return f"cannot read dataset folder {path}: {exc.strerror or exc}"
        exts = ", ".join(IMAGE_EXTENSIONS)
        return f"dataset folder is empty: no image files ({exts}) in its {len(classes)} class subfolders: {path}"
    if kind == "tensors":
        if not os.path.exists(path):
            return f"dataset file not found: {path}"
        if os.path.isdir(path):
            return f"a tensors dataset is a .pt file, but {path} is a folder"
        if os.path.getsize(path) == 0:
            return f"dataset file is empty: {path}"
        return None
    return None


# --------------------------------------------------------------------------------------------
# Weights.


def weights_path(weights: str) -> Path:
    """The file `weights` are read from: the path itself, or for a torchvision weights name the
    file the torch hub cache would hold (`torch.hub.get_dir()/checkpoints/<url's file name>`)."""
    if not is_torchvision_weights_name(weights):
        return Path(weights)
    from urllib.parse import urlparse

    import torch
    from torchvision.models import get_weight

    try:
        enum = get_weight(weights)
    except (ValueError, KeyError, AttributeError) as exc:
        raise AccuracyError(f"unknown torchvision weights {weights!r}: {_one_line(exc)}") from None
    name = os.path.basename(urlparse(enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _read_state_dict(path: Path, what: str) -> dict[str, Any]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a pickle that is not a tensor dict...
        raise AccuracyError(f"cannot read weights {path}: {_one_line(exc)}") from None
    if isinstance(data, dict):
        for inner in ("state_dict", "model"):
            if isinstance(data.get(inner), dict) and not any(torch.is_tensor(v) for v in data.values()):
                data = data[inner]
                break
    if not isinstance(data, dict) or not data or not all(torch.is_tensor(v) for v in data.values()):
        raise AccuracyError(f"{what} {path} does not hold a state dict (a mapping of names to tensors)")
    data = dict(data)
    for prefix in _STRIPPED_PREFIXES:
        if all(k.startswith(prefix) for k in data):
            data = {k[len(prefix) :]: v for k, v in data.items()}
    return data


def _densenet_keys(state: dict[str, Any]) -> dict[str, Any]:
    # torchvision's published densenet files use old names ('norm.1' for 'norm1'); its builder
    # renames them with this pattern (torchvision.models.densenet._load_state_dict).
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def load_weights(model: "nn.Module", weights: str) -> dict[str, Any]:
    """Load `weights` (a state-dict file or a torchvision weights name) into `model`, in place.

    Published googlenet/inception_v3 files carry auxiliary heads that the model as benchmarked
    (`aux_logits=False`) does not have: those keys are dropped and counted. BatchNorm's
    `num_batches_tracked`, absent from old files, is not required.

    Returns:
        What was loaded: `name` (as given), `source` ("file" or "torch hub cache"), `path`,
        `tensors` (count), `dropped_aux_keys`, and `sha256_verified` when the file has a
        `FILE.sha256` sidecar (`cnnbench.checksums`) it was checked against.

    Raises:
        AccuracyError: the file is missing (naming the path where it was expected), unreadable,
            does not match its checksum sidecar, or does not fit the model (naming the first
            missing, unexpected and mis-shaped keys).
    """
    import torch

    from_hub = is_torchvision_weights_name(weights)
    path = weights_path(weights)
    what = f"torchvision weights {weights} (torch hub cache)" if from_hub else "weights file"
    if not path.is_file():
        if from_hub:
            raise AccuracyError(
                f"{weights}: not in the local torch hub cache, expected at {path} "
                "(nothing is downloaded; copy the file there or set TORCH_HOME)"
            )
        raise AccuracyError(f"weights file not found: {path}")
    from cnnbench.checksums import ChecksumError, verify_sidecar

    try:
        sha256 = verify_sidecar(path)  # a shipped file (FILE.sha256 beside it) is checked on load
    except ChecksumError as exc:
        raise AccuracyError(str(exc)) from None
    state = _densenet_keys(_read_state_dict(path, what))
    own = model.state_dict()
    dropped = [k for k in state if k not in own and k.startswith(_AUX_PREFIXES)]
    for k in dropped:
        del state[k]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} in the file, {list(own[k].shape)} in the model"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                more = f" (+{len(keys) - _KEYS_SHOWN} more)" if len(keys) > _KEYS_SHOWN else ""
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:_KEYS_SHOWN])}{more}")
        raise AccuracyError(f"{what} {path} does not fit the model: {'; '.join(parts)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)  # strictness checked above, with better words
    return {
        "name": weights,
        "source": "torch hub cache" if from_hub else "file",
        "path": str(path),
        "tensors": len(state),
        "dropped_aux_keys": len(dropped),
        **({"sha256_verified": sha256} if sha256 else {}),
    }


# --------------------------------------------------------------------------------------------
# Datasets.


@dataclass
class _Batch:
    images: "torch.Tensor"
    labels: "torch.Tensor"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


class _Dataset:
    """A dataset ready to be iterated in batches. Subclasses set `kind`, `num_classes`."""

    kind = ""
    num_classes: int | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def batches(self, batch_size: int, limit: int | None) -> Iterator[_Batch]:
        raise NotImplementedError


class _TensorDataset(_Dataset):
    """Images and labels already in memory (the `digits` and `tensors` kinds)."""

    def __init__(self, kind: str, images: "torch.Tensor", labels: "torch.Tensor", info: dict[str, Any], num_classes: int | None):
        self.kind = kind
        self.images = images
        self.labels = labels
        self.info = info
        self.num_classes = num_classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.info, "size": len(self)}

    def batches(self, batch_size: int, limit: int | None) -> Iterator[_Batch]:
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield _Batch(self.images[start:stop], self.labels[start:stop])


def _digits_arrays(split: str):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise AccuracyError(
            "the digits dataset needs scikit-learn, which is not installed (pip install scikit-learn, "
            "or install cnnbench with its dev extra)"
        ) from None
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(data.images, data.target, **DIGITS_SPLIT, stratify=data.target)
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def digits_tensors(
    split: str = "test",
    *,
    input_size: tuple[int, int, int] = (1, 32, 32),
    mean: tuple[float, ...] = DIGITS_MEAN,
    std: tuple[float, ...] = DIGITS_STD,
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """scikit-learn's digits, one split of `DIGITS_SPLIT`, as model-ready tensors.

    Args:
        split: "train" (1,347 images) or "test" (450).
        input_size: (C, H, W) of the model: 8x8 pixels / 16, resized bilinearly to H x W
            (`align_corners=False`, no antialiasing), repeated over C channels.
        mean, std: per-channel (or one value for all) normalization after the resize.

    Returns:
        (images float32 [N, C, H, W], labels int64 [N]).
    """
    import torch
    from torch.nn import functional as F

    if split not in ("train", "test"):
        raise AccuracyError(f"digits split must be 'train' or 'test', got {split!r}")
    images, labels = _digits_arrays(split)
    c, h, w = input_size
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    if (h, w) != (8, 8):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x.expand(-1, c, -1, -1)
    x = (x - _per_channel(mean, c, "mean")) / _per_channel(std, c, "std")
    return x.contiguous(), torch.as_tensor(labels, dtype=torch.int64)


def _per_channel(values: Any, channels: int, what: str) -> "torch.Tensor":
    import torch

    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise AccuracyError(f"{what} has {len(values)} values but the model's input has {channels} channels")
    if what == "std" and any(v <= 0 for v in values):
        raise AccuracyError(f"std values must be positive, got {values}")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def _load_tensors(path: str, input_size: tuple[int, int, int]) -> _TensorDataset:
    import torch

    problem = check_dataset_path("tensors", path)
    if problem:
        raise AccuracyError(problem)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AccuracyError(f"cannot read tensors dataset {path}: {_one_line(exc)}") from None
    if not isinstance(data, dict) or not {"images", "labels"} <= data.keys():
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AccuracyError(f"tensors dataset {path} must hold {{'images': Tensor[N,C,H,W], 'labels': Tensor[N]}}, got {got}")
    images, labels = data["images"], data["labels"]
    if not torch.is_tensor(images) or images.dim() != 4:
        raise AccuracyError(f"tensors dataset {path}: 'images' must be a 4-D tensor [N, C, H, W]")
    if not torch.is_tensor(labels) or labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        raise AccuracyError(f"tensors dataset {path}: 'labels' must be a 1-D integer tensor [N]")
    if images.shape[0] != labels.shape[0]:
        raise AccuracyError(f"tensors dataset {path}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise AccuracyError(f"dataset file is empty: {path} holds no images")
    if tuple(images.shape[1:]) != tuple(input_size):
        got = "x".join(map(str, images.shape[1:]))
        raise AccuracyError(f"tensors dataset {path}: images are {got}, the model's input is {'x'.join(map(str, input_size))}")
    if int(labels.min()) < 0:
        raise AccuracyError(f"tensors dataset {path}: negative label {int(labels.min())}")
    info = {"name": f"tensors {os.path.basename(path)}", "path": os.path.abspath(path)}
    return _TensorDataset("tensors", images.float().contiguous(), labels.long(), info, None)


@dataclass(frozen=True)
class _Transforms:
    resize: list[int] | int | None  # int: the shorter side (torchvision); [h, w]: exact
    crop: list[int] | None
    mean: list[float]
    std: list[float]
    interpolation: str
    grayscale: bool
    source: str  # where the defaults came from

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "grayscale": self.grayscale,
            "source": self.source,
        }


def _weights_transforms(weights: str | None, model: str | None) -> tuple[dict[str, Any] | None, str]:
    """The preprocessing torchvision's metadata prescribes: of the named weights, else of the
    model's DEFAULT weights (a torchvision model), else None."""
    if weights and is_torchvision_weights_name(weights):
        from torchvision.models import get_weight

        try:
            tf = get_weight(weights).transforms()
        except Exception as exc:
            raise AccuracyError(f"unknown torchvision weights {weights!r}: {_one_line(exc)}") from None
        label = weights
    elif model:
        from cnnbench.models import catalog

        try:
            info = catalog.get_info(model)
        except UserError:
            return None, ""
        if info.source != "torchvision":
            return None, ""
        from torchvision import models as tvm

        w = tvm.get_model_weights(model).DEFAULT
        tf = w.transforms()
        label = f"{type(w).__name__}.{w.name}"
    else:
        return None, ""
    interp = getattr(tf, "interpolation", None)
    return {
        "resize": _side(getattr(tf, "resize_size", None)),
        "crop": _side(getattr(tf, "crop_size", None)),
        "mean": list(getattr(tf, "mean", ())) or None,
        "std": list(getattr(tf, "std", ())) or None,
        "interpolation": getattr(interp, "value", interp) or "bilinear",
    }, label


def _side(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _resolve_transforms(
    explicit: dict[str, Any], input_size: tuple[int, int, int], weights: str | None, model: str | None
) -> _Transforms:
    c, h, w = input_size
    meta, label = _weights_transforms(weights, model)
    if meta is not None:
        crop_meta = meta["crop"] or min(h, w)
        resize: Any = meta["resize"]
        if resize is not None and crop_meta != min(h, w):
            resize = round(resize * min(h, w) / crop_meta)  # keep the weights' resize/crop ratio
        mean, std = meta["mean"] or [0.0], meta["std"] or [1.0]
        interpolation = meta["interpolation"]
        source = f"torchvision metadata of {label}"
    else:
        resize, mean, std, interpolation = [h, w], [0.0], [1.0], "bilinear"
        source = "defaults (resize to the input size, pixels in [0, 1])"
    if explicit:
        source += "; explicit: " + ", ".join(sorted(explicit))
    resize = explicit.get("resize", resize)
    crop = explicit.get("crop", [h, w])
    if isinstance(crop, int):
        crop = [crop, crop]
    if list(crop) != [h, w]:
        raise AccuracyError(f"crop {crop[0]}x{crop[1]} differs from the model's input {h}x{w}; the crop is what the model sees")
    interpolation = explicit.get("interpolation", interpolation)
    if interpolation not in INTERPOLATIONS:
        raise AccuracyError(f"unknown interpolation {interpolation!r}; choose from {', '.join(INTERPOLATIONS)}")
    grayscale = bool(explicit.get("grayscale", c == 1))
    if c not in (1, 3):
        raise AccuracyError(f"imagefolder images have 1 or 3 channels, the model's input has {c}")
    if c == 1 and not grayscale:
        raise AccuracyError("the model takes 1 channel; an RGB image cannot be fed to it (leave grayscale unset or true)")
    mean = list(explicit.get("mean", mean))
    std = list(explicit.get("std", std))
    _per_channel(mean, c, "mean"), _per_channel(std, c, "std")  # checks the lengths and signs
    return _Transforms(
        resize=list(resize) if isinstance(resize, (list, tuple)) else resize,
        crop=list(crop),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        interpolation=interpolation,
        grayscale=grayscale,
        source=source,
    )


class _ImageFolder(_Dataset):
    kind = "imagefolder"

    def __init__(self, root: str, *, input_size: tuple[int, int, int], transforms: _Transforms, strict: bool):
        problem = check_dataset_path("imagefolder", root)
        if problem:
            raise AccuracyError(problem)
        self.root = os.path.abspath(root)
        self.input_size = input_size
        self.transforms = transforms
        self.strict = strict
        with os.scandir(root) as it:
            self.classes = sorted(e.name for e in _visible(it) if e.is_dir())
        per_class: list[list[str]] = []
        self.ignored_files = 0
        for name in self.classes:
            folder = os.path.join(root, name)
            with os.scandir(folder) as it:
                entries = sorted(_visible(it), key=lambda e: e.name)
            images = [e.path for e in entries if e.is_file() and _is_image(e.name)]
            self.ignored_files += len(entries) - len(images)
            per_class.append(images)
        # round-robin across classes, so that `limit` takes a balanced prefix
        self.items: list[tuple[str, int]] = []
        depth = max(len(files) for files in per_class)
        for i in range(depth):
            for label, files in enumerate(per_class):
                if i < len(files):
                    self.items.append((files[i], label))
        self.num_classes = len(self.classes)
        self._mean = _per_channel(transforms.mean, input_size[0], "mean")
        self._std = _per_channel(transforms.std, input_size[0], "std")

    def __len__(self) -> int:
        return len(self.items)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": f"imagefolder {os.path.basename(self.root)}",
            "path": self.root,
            "classes": self.num_classes,
            "size": len(self),
            "ignored_files": self.ignored_files,
            "strict": self.strict,
            "transforms": self.transforms.to_dict(),
        }

    def _decode(self, path: str) -> "torch.Tensor":
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        t = self.transforms
        with Image.open(path) as img:
            img = img.convert("L" if t.grayscale else "RGB")
        if t.resize is not None:
            img = TF.resize(img, t.resize, interpolation=InterpolationMode(t.interpolation), antialias=True)
        img = TF.center_crop(img, t.crop)
        x = TF.pil_to_tensor(img).float().div_(255.0)
        return x.expand(self.input_size[0], -1, -1) if x.shape[0] == 1 else x

    def _try_decode(self, path: str) -> tuple["torch.Tensor | None", str]:
        try:
            return self._decode(path), ""
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            if self.strict:
                raise AccuracyError(f"cannot decode image {path}: {_one_line(exc)} (strict: true)") from None
            return None, f"{type(exc).__name__}: {_one_line(exc)}"

    def batches(self, batch_size: int, limit: int | None) -> Iterator[_Batch]:
        from concurrent.futures import ThreadPoolExecutor

        import torch

        items = self.items if limit is None else self.items[:limit]
        # PIL releases the GIL while decoding: a few threads keep the model fed.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                decoded = list(pool.map(self._try_decode, [p for p, _ in chunk]))
                xs, ys, skipped = [], [], []
                for (path, label), (x, reason) in zip(chunk, decoded):
                    if x is None:
                        skipped.append((path, reason))
                    else:
                        xs.append(x)
                        ys.append(label)
                if not xs:
                    yield _Batch(torch.empty(0, *self.input_size), torch.empty(0, dtype=torch.int64), skipped)
                    continue
                images = (torch.stack(xs) - self._mean) / self._std
                yield _Batch(images, torch.tensor(ys, dtype=torch.int64), skipped)


def load_dataset(
    config: dict[str, Any],
    *,
    input_size: tuple[int, int, int],
    weights: str | None = None,
    model: str | None = None,
) -> _Dataset:
    """The dataset a `dataset` mapping describes, ready to iterate (images decoded lazily).

    Args:
        config: {kind, path, split, strict, transforms} (see the module docstring); `limit` is
            applied by `evaluate`.
        input_size: (C, H, W) of the model.
        weights: the weights given with it; a torchvision name supplies the transforms.
        model: the registry name; a torchvision model's DEFAULT weights supply the transforms.

    Raises:
        AccuracyError: a missing or empty path, a malformed file, inconsistent transforms.
    """
    kind = config.get("kind")
    explicit = dict(config.get("transforms") or {})
    if kind == "digits":
        c = input_size[0]
        split = config.get("split", "test")
        mean = explicit.get("mean", list(DIGITS_MEAN))
        std = explicit.get("std", list(DIGITS_STD))
        x, y = digits_tensors(split, input_size=input_size, mean=tuple(mean), std=tuple(std))
        info = {
            "name": f"digits {split}",
            "split": split,
            "source": "sklearn.datasets.load_digits",
            "split_rule": "train_test_split(test_size=0.25, random_state=0, stratify=y)",
            "transforms": {"scale": "x / 16", "resize": [input_size[1], input_size[2]], "interpolation": "bilinear",
                           "channels": c, "mean": list(mean), "std": list(std)},
        }  # fmt: skip
        return _TensorDataset("digits", x, y, info, 10)
    if kind == "tensors":
        return _load_tensors(str(config.get("path")), input_size)
    if kind == "imagefolder":
        transforms = _resolve_transforms(explicit, input_size, weights, model)
        return _ImageFolder(str(config.get("path")), input_size=input_size, transforms=transforms,
                            strict=bool(config.get("strict", False)))  # fmt: skip
    raise AccuracyError(f"unknown dataset kind {kind!r}; choose from {', '.join(DATASET_KINDS)}")


# --------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(
    predict: Callable[[Any], Any],
    dataset: _Dataset,
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
    bar = _progress_bar(planned, dataset.describe().get("name", dataset.kind)) if _want_progress(progress) else None
    side = os.environ.get(PROGRESS_FILE_ENV)
    to_file = _ProgressFile(side, planned) if side and bar is None else None
    try:
        for batch in dataset.batches(batch_size, limit):
            skipped_count += len(batch.skipped)
            skipped.extend(batch.skipped[: max(0, _SKIPPED_SHOWN - len(skipped))])
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


def _check_outputs(out: "torch.Tensor", n: int, dataset: _Dataset, labels: "torch.Tensor") -> None:
    if out.dim() != 2 or out.shape[0] != n:
        raise AccuracyError(f"the model's outputs are {list(out.shape)}, expected [{n}, num_classes] class scores")
    k = int(out.shape[1])
    if dataset.num_classes is not None and dataset.num_classes != k:
        what = f"{dataset.num_classes} class folders" if dataset.kind == "imagefolder" else f"{dataset.num_classes} classes"
        raise AccuracyError(f"the dataset has {what} but the model outputs {k} classes")
    top = int(labels.max()) if labels.numel() else -1
    if top >= k:
        raise AccuracyError(f"label {top} is out of range: the model outputs {k} classes")


class _ProgressFile:
    """An evaluation's progress for a manager's bar: "done total" written to `path` atomically,
    at most every 0.2 s and at the end. Never fails the evaluation."""

    def __init__(self, path: str, total: int):
        self.path, self.total, self.done, self._last = path, total, 0, 0.0
        self._write()

    def advance(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self._last >= _PROGRESS_EVERY_S or self.done >= self.total:
            self._write()

    def _write(self) -> None:
        self._last = time.monotonic()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{self.done} {self.total}\n")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a progress bar is never worth an evaluation


def read_progress(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(done, total) images from a progress file a worker writes; None before it exists."""
    try:
        done, total = (int(x) for x in Path(path).read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return None
    return done, total


def _want_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _progress_bar(total: int | None, description: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    bar.start()
    return bar, bar.add_task(f"accuracy: {description}", total=total)


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
    dataset: _Dataset | None

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
            from cnnbench.worker import classify_exception

            text = _one_line(exc)
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


def _one_line(exc: Any) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
