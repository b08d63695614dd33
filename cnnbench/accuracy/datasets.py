"""Datasets for a measured accuracy, checked before anything is timed.

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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from cnnbench.core.errors import AccuracyError, UserError
from cnnbench.core.text import one_line

if TYPE_CHECKING:  # pragma: no cover
    import torch


from cnnbench.accuracy.weights import is_torchvision_weights_name
from cnnbench.models import catalog
from cnnbench.models.timm_zoo import preprocessing

__all__ = ["DATASET_KINDS", "DIGITS_SPLIT", "IMAGE_EXTENSIONS", "INTERPOLATIONS", "check_dataset_path", "load_dataset", "digits_tensors"]

DATASET_KINDS = ("imagefolder", "digits", "tensors")

# The documented digits split: sklearn.model_selection.train_test_split(X, y, **DIGITS_SPLIT,
# stratify=y). 1,797 images -> 1,347 train, 450 test (45 per class, within one).
DIGITS_SPLIT = {"test_size": 0.25, "random_state": 0}
DIGITS_MEAN = (0.5,)
DIGITS_STD = (0.5,)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")

SKIPPED_SHOWN = 5  # undecodable images named in the record (all are counted)


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




@dataclass
class _Batch:
    images: "torch.Tensor"
    labels: "torch.Tensor"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


class Dataset:
    """A dataset ready to be iterated in batches. Subclasses set `kind`, `num_classes`."""

    kind = ""
    num_classes: int | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def batches(self, batch_size: int, limit: int | None) -> Iterator[_Batch]:
        raise NotImplementedError


class _TensorDataset(Dataset):
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
    except Exception as exc:  # noqa: BLE001 - torch.load raises whatever the file provokes
        raise AccuracyError(f"cannot read tensors dataset {path}: {one_line(exc)}") from None
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
        except Exception as exc:  # noqa: BLE001 - torchvision raises KeyError/ValueError for a bad name
            raise AccuracyError(f"unknown torchvision weights {weights!r}: {one_line(exc)}") from None
        label = weights
    elif model:

        try:
            info = catalog.get_info(model)
        except UserError:
            return None, ""
        if info.source == "timm":  # its pretrained config (cnnbench.models.timm_zoo)

            return preprocessing(model), f"timm pretrained config of {model}"
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
        source = label if label.startswith("timm ") else f"torchvision metadata of {label}"
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


class _ImageFolder(Dataset):
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
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            if self.strict:
                raise AccuracyError(f"cannot decode image {path}: {one_line(exc)} (strict: true)") from None
            return None, f"{type(exc).__name__}: {one_line(exc)}"

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
) -> Dataset:
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
