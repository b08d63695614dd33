"""The names the registry knows, with their default input sizes. Pure: no torch import.

Suite validation and `bench.py list models` run from this table so they answer instantly; the
builders themselves live in `cnnbench.models.registry` and import torch when called.
"""

from __future__ import annotations

import difflib
import fnmatch

from cnnbench.core.errors import UnknownModelError, UserError
from cnnbench.core.text import natural_key
from cnnbench.models._torchvision_catalog import TORCHVISION_MODELS
from cnnbench.models.info import ModelInfo
from cnnbench.models.timm_zoo import list_timm_models, model_info, resolve

__all__ = ["ModelInfo", "MODELS", "list_models", "get_info", "suggest", "named_input_size"]


# The course's own models (see cnnbench/models/seeds.py for their definitions).
_SEEDS = {
    "lenet5": ((1, 32, 32), 10, "LeNet-5 (LeCun et al. 1998): conv5-pool-conv5-pool-fc120-fc84-fc10"),
    "mnist_cnn_bn": ((1, 28, 28), 10, "two 5x5 conv+BN+ReLU+maxpool blocks (16, 32 ch), one linear layer"),
    "mnist_cnn": ((1, 28, 28), 10, "two 3x3 'same' convs (32, 64 ch) with pooling, then 3136-128-10"),
    "mnist_fcn": ((1, 28, 28), 10, "fully convolutional mnist_cnn: 3x3 valid conv to 128, adaptive max pool, 1x1 conv"),
    "inception_naive": ((256, 28, 28), 0, "naive Inception module: 1x1/128, 3x3/192, 5x5/96, 3x3 max pool"),
    "inception_bottleneck": ((256, 28, 28), 0, "Inception module with 1x1/64 reductions before 3x3, 5x5 and after the pool"),
}

MODELS: dict[str, ModelInfo] = {
    **{
        name: ModelInfo(name, tuple(size), ncls, "torchvision", f"torchvision.models.{name}")
        for name, (size, ncls) in TORCHVISION_MODELS.items()
    },
    **{name: ModelInfo(name, size, ncls, "seeds", desc) for name, (size, ncls, desc) in _SEEDS.items()},
}


def list_models(pattern: str | None = None, *, exclude: list[str] | None = None) -> list[str]:
    """Registry names matching an fnmatch glob (all when None), naturally sorted (timm-style).
    A `timm:` glob lists timm's models instead (this imports timm, and torch)."""
    if pattern is not None and pattern.startswith("timm:"):

        names = list_timm_models(pattern)
        return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude or ())]
    names = [n for n in MODELS if pattern is None or fnmatch.fnmatchcase(n, pattern)]
    for pat in exclude or ():
        names = [n for n in names if not fnmatch.fnmatchcase(n, pat)]
    return sorted(names, key=natural_key)


def suggest(name: str, *, limit: int = 3) -> list[str]:
    """The nearest registry names to a misspelled one, for "did you mean" messages."""
    return difflib.get_close_matches(name.lower(), list(MODELS), n=limit, cutoff=0.6)


def get_info(name: str) -> ModelInfo:
    """The catalog entry for a registry name; raises UnknownModelError with suggestions.
    A `timm:` name is resolved by cnnbench.models.timm_zoo (importing timm)."""
    if name.startswith("timm:"):

        return model_info(name)
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(name, suggest(name)) from None


def torchvision_catalog_from_torchvision() -> dict[str, tuple[tuple[int, int, int], int]]:
    """Read every classification builder's default input size from torchvision's weight metadata.

    The default size is the crop size of the builder's DEFAULT weights (299 for inception_v3,
    380 for efficientnet_b4, ...), i.e. the size its published accuracy was measured at.
    """
    from torchvision import models

    out: dict[str, tuple[tuple[int, int, int], int]] = {}
    for name in sorted(models.list_models(module=models), key=natural_key):
        weights = models.get_model_weights(name).DEFAULT
        crop = weights.transforms().crop_size
        side = crop[0] if isinstance(crop, (list, tuple)) else int(crop)
        out[name] = ((3, side, side), len(weights.meta["categories"]))
    return out

def named_input_size(name: str, which: str, *, user: bool = False) -> tuple[int, int, int]:
    """`input_size: train` or `test` of a model: its pretrained config's size (timm), or for a
    registry model the catalog's default (the size its published accuracy was measured at).

    Raises:
        UserError: `train` for a model that is not from timm (torchvision records no train size).
    """
    if which not in ("train", "test"):
        raise ValueError(which)
    if user:
        raise UserError(
            f"input_size: {which} needs a registry or timm model; user model {name!r} has no pretrained config"
        )
    if name.startswith("timm:"):

        m = resolve(name)
        return m.train_size if which == "train" else m.test_size
    if which == "train":
        raise UserError(f"input_size: train is only known for timm models (their pretrained config), not {name!r}")
    return get_info(name).input_size
