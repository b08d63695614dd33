"""torchvision's published figures for every classifier, offline and without torch.

`PUBLISHED` comes from the generated `_published_catalog.py` (tools/gen_published.py): per model,
the DEFAULT weights' name, published ImageNet-1K val top-1/top-5, GMACs per image (torchvision's
`_ops`, multiply-accumulates despite the "GFLOPS" label) and parameter count. Always labelled
"published" wherever shown: nothing here was measured by cnnbench. `family` groups models the way
the course's landscape slide colours them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnbench.models._published_catalog import TORCHVISION_PUBLISHED
from cnnbench.models._torchvision_catalog import TORCHVISION_MODELS

__all__ = ["Published", "PUBLISHED", "family", "published_from_torchvision"]


@dataclass(frozen=True)
class Published:
    model: str
    weights: str
    top1: float
    top5: float
    gmacs: float  # per image, at input_size
    params: int
    input_size: tuple[int, int, int]

    @property
    def family(self) -> str:
        return family(self.model)


PUBLISHED: dict[str, Published] = {
    name: Published(name, w, a1, a5, g, p, tuple(size)) for name, (w, a1, a5, g, p, size) in TORCHVISION_PUBLISHED.items()
}

# (family, pattern) in order: the first match wins.
_FAMILIES = (
    ("AlexNet", r"alexnet$"),
    ("VGG", r"vgg"),
    ("GoogLeNet/Inception", r"googlenet|inception"),
    ("ResNet", r"resnet\d+$"),
    ("ResNeXt / Wide ResNet", r"resnext|wide_resnet"),
    ("DenseNet", r"densenet"),
    ("SqueezeNet", r"squeezenet"),
    ("MobileNet / MnasNet", r"mobilenet|mnasnet"),
    ("ShuffleNet", r"shufflenet"),
    ("EfficientNet", r"efficientnet"),
    ("RegNet", r"regnet"),
    ("ConvNeXt", r"convnext"),
    ("Vision Transformer", r"vit_|swin|maxvit"),
)


def family(model: str) -> str:
    """The architecture family of a torchvision model name ("other" when none matches)."""
    for name, pattern in _FAMILIES:
        if re.match(pattern, model):
            return name
    return "other"


def published_from_torchvision() -> dict[str, tuple]:
    """Read the rows of `_published_catalog.py` from the installed torchvision (imports it)."""
    from torchvision.models import get_model_weights

    rows = {}
    for name in TORCHVISION_MODELS:
        try:
            w = get_model_weights(name).DEFAULT
        except (ValueError, KeyError, AttributeError):
            continue
        meta = w.meta
        metrics = (meta.get("_metrics") or {}).get("ImageNet-1K") or {}
        if metrics.get("acc@1") is None or meta.get("_ops") is None:
            continue
        crop = w.transforms().crop_size[0]
        rows[name] = (
            f"{type(w).__name__}.{w.name}",
            float(metrics["acc@1"]),
            float(metrics.get("acc@5") or 0.0),
            float(meta["_ops"]),
            int(meta["num_params"]),
            (3, int(crop), int(crop)),
        )
    return rows
