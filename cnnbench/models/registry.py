"""Build a model by registry name or import path, the way its published weights were built.

Names come from `cnnbench.models.catalog` (torchvision's classification zoo and the course's
seed models); a user model is named by `source="package.module:callable"`. Weights are never
loaded here: every torchvision builder is called with `weights=None`, and the builder arguments
that its published weights would have set are passed explicitly, so that parameter counts and
MACs are those of the published model:

- googlenet, inception_v3: `aux_logits=False` (the published googlenet has no auxiliary
  classifiers: 6.6M parameters, not 13.0M), `transform_input=True` (the published weights
  re-normalise their input inside `forward`) and `init_weights=False` (the default init draws
  truncated normals through scipy and takes seconds; a FutureWarning too).
- vit_*: `image_size` is the input side (vit_h_14's default weights are 518x518; the builder's
  224 would reject that input).
- maxvit_t: `input_size` is the input (H, W), for the same reason.

torchvision is imported inside the functions, so `import cnnbench.models.registry` stays cheap
for code that only needs the error types.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from cnnbench.core.text import one_line
from cnnbench.core.errors import UserError
from cnnbench.models import catalog, timm_zoo
from cnnbench.models.timm_zoo import published

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "ModelBuildError",
    "build_model",
    "builder_kwargs",
    "aux_heads_included",
    "published_metadata",
]

# Builder arguments that reproduce the published architecture (see the module docstring).
# User kwargs override them.
_AS_PUBLISHED: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "transform_input": True, "init_weights": False},
    "inception_v3": {"aux_logits": False, "transform_input": True, "init_weights": False},
}

# torchvision's `num_params` is not consistent about auxiliary heads: googlenet's figure
# (6,624,904) excludes them, inception_v3's (27,161,264) includes its AuxLogits head although the
# builder removes it (as built: 23,834,568). tests/test_models.py checks both facts.
_PUBLISHED_PARAMS_INCLUDE_AUX = {"googlenet": False, "inception_v3": True}


class ModelBuildError(UserError):
    """A model that cannot be built: a bad import path, a failing builder, bad kwargs."""

    def __init__(self, what: str, message: str):
        self.what = what
        super().__init__(one_line(f"{what}: {message}"))


def _describe(exc: BaseException) -> str:
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def builder_kwargs(
    name: str, *, kwargs: dict[str, Any] | None = None, input_size: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """The keyword arguments `build_model` passes to torchvision's builder for `name`.

    Args:
        name: a torchvision registry name.
        kwargs: the user's `model_kwargs`; they win over the as-published defaults.
        input_size: (C, H, W) the model will run at; the catalog default when None.

    Returns:
        The arguments, without `weights` (always None).
    """
    out = dict(_AS_PUBLISHED.get(name, {}))
    if input_size is None:
        input_size = catalog.get_info(name).input_size
    _, h, w = input_size
    if name.startswith("vit_"):
        if h != w:
            raise ModelBuildError(name, f"vision transformers need a square input, got {h}x{w}")
        out["image_size"] = h
    elif name.startswith("maxvit_"):
        out["input_size"] = (h, w)
    out.update(kwargs or {})
    return out


def build_model(
    name: str,
    *,
    source: str | None = None,
    kwargs: dict[str, Any] | None = None,
    input_size: tuple[int, int, int] | None = None,
) -> "nn.Module":
    """Build a model with random weights, in eval() mode.

    Args:
        name: a registry name (torchvision or seed model); only a label when `source` is given.
        source: "package.module:callable" of a user model; the callable is called with `kwargs`
            and must return an `nn.Module`.
        kwargs: builder keyword arguments (a case's `model_kwargs`).
        input_size: (C, H, W) the model will run at. Only resolution-bound builders (vit_*,
            maxvit_t) use it; the catalog default when None.

    Returns:
        The model, in eval() mode, on CPU, fp32.

    Raises:
        UnknownModelError: `name` is not in the registry and no `source` is given.
        ModelBuildError: the import path, the builder or its arguments failed (one line).
    """
    from torch import nn

    kwargs = dict(kwargs or {})
    if source is not None:
        model = _build_from_source(source, kwargs)
        what = source
    else:
        info = catalog.get_info(name)  # raises UnknownModelError with suggestions
        what = name
        if info.source == "timm":

            model = _call(name, lambda **kw: timm_zoo.build(name, kwargs=kw, input_size=input_size), kwargs)
        elif info.source == "seeds":
            from cnnbench.models.seeds import SEED_BUILDERS

            model = _call(name, SEED_BUILDERS[name], kwargs)
        else:
            from torchvision import models as tvm

            args = builder_kwargs(name, kwargs=kwargs, input_size=input_size)
            model = _call(name, tvm.get_model, args, name, weights=None)
    if not isinstance(model, nn.Module):
        raise ModelBuildError(what, f"the builder returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _call(what: str, fn: Any, kwargs: dict[str, Any], *args: Any, **fixed: Any) -> Any:
    try:
        return fn(*args, **fixed, **kwargs)
    except Exception as exc:  # a builder may raise anything; the case records it as one line
        shown = f" with {kwargs!r}" if kwargs else ""
        raise ModelBuildError(what, f"building failed{shown}: {_describe(exc)}") from exc


def _build_from_source(source: str, kwargs: dict[str, Any]) -> Any:
    module_name, sep, attr_path = source.partition(":")
    if not sep or not module_name or not attr_path or ":" in attr_path:
        raise ModelBuildError(source, "a model source must look like 'package.module:callable'")
    # A user runs `bench.py` next to their model file: make the working directory importable,
    # after installed packages so it never shadows them.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelBuildError(source, f"cannot import {module_name!r}: {_describe(exc)}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelBuildError(source, f"{module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ModelBuildError(source, f"{attr_path!r} is not callable")
    return _call(source, obj, kwargs)


def aux_heads_included(model: "nn.Module") -> bool:
    """Whether the model as built carries auxiliary classifiers (GoogLeNet aux1/aux2, Inception
    v3 AuxLogits), whose parameters then count in its total although inference never runs them.
    """
    for attr in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, attr, None) is not None:
            return True
    return False


def published_metadata(name: str, input_size: tuple[int, int, int] | None = None) -> dict[str, Any] | None:
    """torchvision's metadata for the DEFAULT weights of `name`, read offline.

    Nothing is downloaded: the weight enums and their transforms are plain Python data. A
    `timm:` name gets timm's published figures instead (`timm_zoo.published`, at `input_size`).

    Returns:
        None for seed and user models, else a dict: `weights` (enum name), `dataset`, `acc@1`,
        `acc@5` (percent, published), `num_params`, `num_params_includes_aux`, `gmacs`
        (torchvision's `_ops`, which its docs label GFLOPS but which counts multiply-accumulates),
        `gflops` (2 x gmacs), `file_size_mb`, `min_size`, `crop_size`, `resize_size`, `mean`,
        `std`, `interpolation`, `num_classes`, `recipe`.
    """
    info = catalog.get_info(name)
    if info.source == "timm":

        return published(name, input_size)
    if info.source != "torchvision":
        return None
    from torchvision import models as tvm

    weights = tvm.get_model_weights(name).DEFAULT
    meta = weights.meta
    metrics = meta.get("_metrics", {})
    dataset, scores = next(iter(metrics.items()), (None, {}))
    tf = weights.transforms()
    ops = meta.get("_ops")
    interpolation = getattr(tf, "interpolation", None)
    return {
        "weights": f"{type(weights).__name__}.{weights.name}",
        "dataset": dataset,
        "acc@1": scores.get("acc@1"),
        "acc@5": scores.get("acc@5"),
        "num_params": meta.get("num_params"),
        "num_params_includes_aux": _PUBLISHED_PARAMS_INCLUDE_AUX.get(name, False),
        "gmacs": ops,
        "gflops": None if ops is None else 2 * ops,
        "file_size_mb": meta.get("_file_size"),
        "min_size": list(meta["min_size"]) if "min_size" in meta else None,
        "crop_size": _side(getattr(tf, "crop_size", None)),
        "resize_size": _side(getattr(tf, "resize_size", None)),
        "mean": list(getattr(tf, "mean", ())) or None,
        "std": list(getattr(tf, "std", ())) or None,
        "interpolation": getattr(interpolation, "value", interpolation),
        "num_classes": len(meta.get("categories") or ()) or None,
        "recipe": meta.get("recipe"),
    }


def _side(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return int(value)
