"""timm (pytorch-image-models) models by name: `timm:<arch>` and `timm:<arch>.<tag>`.

timm is an optional dependency (`pip install -c constraints.txt -e '.[timm]'`): it is detected
once, without importing it (`HAS_TIMM`), and imported only when a `timm:` name is used, since
`import timm` imports torch. Everything a suite, `list models`, `profile`, `accuracy` and the
worker need about a timm model goes through this module:

- **The name.** `timm:resnet18` is the arch with its default pretrained tag (timm's first tag,
  `a1_in1k` here); `timm:resnet18.tv_in1k` names the tag. The tag matters even without weights:
  its pretrained config sets the input size and the class count (an `in22k` tag has 21,841
  classes). An unknown arch is an `UnknownModelError` with suggestions from `timm.list_models`;
  a tag without a pretrained config is one line naming the arch's tags.
- **The build.** `timm.create_model("<arch>.<tag>", pretrained=False, **model_kwargs)`: random
  weights, never a download (weights for `accuracy` come from a local file, as for torchvision).
  A model whose config says `fixed_input_size` (ViTs) gets `img_size` when the case's size is
  not the config's, as torchvision's vit_* get `image_size`.
- **The input size.** The config's *test* size by default (`test_input_size`, else
  `input_size`), as timm's own `benchmark.py` does unless `--use-train-size`; a suite's
  `input_size: train` or `test` chooses, a number or `HxW` overrides. The case records the size
  it ran at (its spec) and the record's `published.pretrained_cfg` the config's train and test
  sizes, with `published.input_size_is` saying which one the case used.
- **Published figures.** timm's package carries no accuracy, parameter or MAC figures; its
  repository's results tables do. A subset ships in `_timm_published.py` (with the source file,
  commit and date): ImageNet-1k top-1/top-5 per tag and image size, labelled "published" like
  torchvision's metadata, and per arch the parameter count and GMACs per image at each
  benchmarked size, against which the worker cross-checks its own counts (`check_counts`).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cnnbench.core.errors import UnknownModelError, UserError

from cnnbench.core.text import natural_key
from cnnbench.models.info import ModelInfo
from cnnbench.models import _timm_published as data

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "PREFIX",
    "HAS_TIMM",
    "INSTALL_HINT",
    "TimmModel",
    "is_timm_name",
    "resolve",
    "model_info",
    "list_timm_models",
    "build",
    "published",
    "check_counts",
    "published_counts",
]

PREFIX = "timm:"
HAS_TIMM = importlib.util.find_spec("timm") is not None
INSTALL_HINT = "timm is not installed: pip install -c constraints.txt -e '.[timm]' (or: pip install timm)"

# How far our counts may be from timm's published ones before the case gets a warning: timm
# rounds params (millions) and GMACs to 2 decimals, so the tolerance is that rounding plus a
# relative margin (fvcore vs timm's counter disagree on a few ops, e.g. attention matmuls).
PARAMS_REL_TOL = 0.01
GMACS_REL_TOL = 0.10
_ROUNDING = 0.005  # half the last published digit, in millions or GMACs


@dataclass(frozen=True)
class TimmModel:
    """A resolved `timm:` name: the arch, the tag its pretrained config is read from, and the
    fields of that config the benchmark uses."""

    name: str  # as written, e.g. "timm:resnet18"
    arch: str
    tag: str  # the resolved tag ("" only for an arch without any pretrained config)
    train_size: tuple[int, int, int]
    test_size: tuple[int, int, int]
    num_classes: int
    fixed_input_size: bool
    cfg: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def timm_name(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


def is_timm_name(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _timm() -> Any:
    if not HAS_TIMM:
        raise UserError(INSTALL_HINT)
    import timm

    return timm


def _size(value: Any) -> tuple[int, int, int] | None:
    if not value:
        return None
    c, h, w = (int(v) for v in value)
    return (c, h, w)


@lru_cache(maxsize=None)
def resolve(name: str) -> TimmModel:
    """Resolve `timm:<arch>[.<tag>]` against the installed timm, offline.

    Raises:
        UserError: timm is missing (the install command), a tag without a pretrained config.
        UnknownModelError: an unknown arch, with the nearest timm names.
    """
    if not is_timm_name(name):
        raise ValueError(f"not a timm name: {name!r}")
    full = name[len(PREFIX) :]
    timm = _timm()
    from timm.models import get_pretrained_cfg, is_model, split_model_name_tag

    arch, tag = split_model_name_tag(full)
    if not arch or not is_model(arch):
        raise UnknownModelError(name, [PREFIX + s for s in _suggest(timm, arch or full)])
    try:
        cfg = get_pretrained_cfg(full if tag else arch)
    except RuntimeError:  # timm: "Invalid pretrained tag (x) for arch."
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
        shown = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "")
        raise UserError(
            f"{name}: timm has no pretrained config tagged {tag!r} for {arch}"
            + (f" (its tags: {shown})" if tags else " (it has no tags; write timm:" + arch + ")")
        ) from None
    if cfg is None:
        raise UserError(f"{name}: timm has no pretrained config for {arch}, so no input size; give input_size")
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    train = _size(d.get("input_size")) or (3, 224, 224)
    test = _size(d.get("test_input_size")) or train
    keep = ("input_size", "test_input_size", "crop_pct", "test_crop_pct", "interpolation", "mean", "std",
            "num_classes", "fixed_input_size", "license", "hf_hub_id")  # fmt: skip
    return TimmModel(
        name=name,
        arch=arch,
        tag=tag or str(getattr(cfg, "tag", "") or ""),
        train_size=train,
        test_size=test,
        num_classes=int(d.get("num_classes") or 0),
        fixed_input_size=bool(d.get("fixed_input_size")),
        cfg={k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if k in keep},
    )


def _suggest(timm: Any, arch: str, limit: int = 3) -> list[str]:
    names = timm.list_models()
    close = difflib.get_close_matches(arch.lower(), names, n=limit, cutoff=0.6)
    if len(close) < limit:  # a prefix of a family (resnet) has no close match but many members
        close += [n for n in timm.list_models(f"{arch}*") if n not in close][: limit - len(close)]
    return close


def model_info(name: str) -> ModelInfo:
    """The catalog entry of a timm name: its default input size is the config's test size."""
    m = resolve(name)
    return ModelInfo(name, m.test_size, m.num_classes, "timm", f"timm {m.timm_name}")




def list_timm_models(pattern: str) -> list[str]:
    """`timm:` names matching a glob such as `timm:resnet1*` or `timm:resnet18.*` (tags).

    A glob without a dot lists archs (timm.list_models); one with a dot lists pretrained tags
    (timm.list_pretrained). Naturally sorted, like the registry."""
    timm = _timm()
    glob = pattern[len(PREFIX) :] if is_timm_name(pattern) else pattern
    names = timm.list_pretrained(glob) if "." in glob else timm.list_models(glob)
    return sorted((PREFIX + n for n in names if fnmatch.fnmatchcase(n, glob)), key=natural_key)


def build(
    name: str, *, kwargs: dict[str, Any] | None = None, input_size: tuple[int, int, int] | None = None
) -> "nn.Module":
    """The model with random weights (`pretrained=False`), in eval() mode. The caller wraps
    failures as ModelBuildError."""
    m = resolve(name)
    timm = _timm()
    args = dict(kwargs or {})
    if input_size is not None and m.fixed_input_size and tuple(input_size[1:]) != m.train_size[1:]:
        args.setdefault("img_size", tuple(input_size[1:]))
    return timm.create_model(m.timm_name, pretrained=False, **args).eval()


def published_counts(arch: str) -> list[tuple]:
    """The shipped (input side, params, GMACs) rows of a timm arch's published results tables
    (empty when none ship). Needs no timm: shard cost estimates read it."""

    return list(data.COUNTS.get(arch, []))


def _nearest(rows: list[tuple], side: int | None) -> tuple | None:
    return next((r for r in rows if side is not None and r[0] == side), None)


def published(name: str, input_size: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """timm's published figures of a model, offline, in the shape of
    `registry.published_metadata` (so reports and `accuracy` read both alike), plus
    `label: "published"`, the sources and the pretrained config.

    `acc@1`/`acc@5` are those of the tag at the case's image size when timm evaluated it there,
    else at the config's test size (`accuracy_img_size` says which); `num_params` is timm's
    (any size); `gmacs` only at a benchmarked size equal to the case's (None otherwise).
    """

    m = resolve(name)
    size = tuple(input_size) if input_size is not None else m.test_size
    side = size[1] if size[1] == size[2] else None
    acc_rows = data.ACCURACY.get(m.timm_name, [])
    acc = _nearest(acc_rows, side) or _nearest(acc_rows, m.test_size[1])
    count_rows = data.COUNTS.get(m.arch, [])
    count = _nearest(count_rows, side)
    params_m = count[1] if count else (count_rows[0][1] if count_rows else (acc[3] if acc else None))
    if size == m.test_size:
        size_is = "test"
    elif size == m.train_size:
        size_is = "train"
    else:
        size_is = "other"
    return {
        "label": "published",
        "source": "timm",
        "weights": m.timm_name,
        "dataset": "ImageNet-1k" if acc else None,
        "acc@1": acc[1] if acc else None,
        "acc@5": acc[2] if acc else None,
        "accuracy_img_size": acc[0] if acc else None,
        "num_params": None if params_m is None else int(round(params_m * 1e6)),
        "num_params_includes_aux": False,
        "gmacs": count[2] if count else None,
        "gflops": None if not count else 2 * count[2],
        "counts_img_size": count[0] if count else None,
        "num_classes": m.num_classes,
        "crop_size": m.test_size[1],
        "mean": m.cfg.get("mean"),
        "std": m.cfg.get("std"),
        "interpolation": m.cfg.get("interpolation"),
        "input_size_is": size_is,
        "pretrained_cfg": dict(m.cfg),
        "accuracy_source": dict(data.ACCURACY_SOURCE) if acc else None,
        "counts_source": dict(data.COUNTS_SOURCE) if count_rows else None,
    }


def check_counts(pub: dict[str, Any] | None, *, params: int | None, gmacs_per_image: float | None) -> list[str]:
    """Warnings where our counts disagree with timm's published ones beyond their rounding.

    Args:
        pub: a record's `published` (anything not from timm is ignored).
        params: our parameter count; gmacs_per_image: our fvcore GMACs at the case's size.
    """
    if not pub or pub.get("source") != "timm":
        return []
    out = []
    want = pub.get("num_params")
    if want and params is not None:
        mine, theirs = params / 1e6, want / 1e6
        if abs(mine - theirs) > _ROUNDING + PARAMS_REL_TOL * theirs:
            out.append(f"params {mine:.2f}M differ from timm's published {theirs:.2f}M ({pub.get('weights')})")
    want_g = pub.get("gmacs")
    if want_g and gmacs_per_image is not None:
        if abs(gmacs_per_image - want_g) > _ROUNDING + GMACS_REL_TOL * want_g:
            out.append(
                f"GMACs {gmacs_per_image:.3f} differ from timm's published {want_g:.2f} "
                f"at {pub.get('counts_img_size')}px ({pub.get('weights')})"
            )
    return out


def preprocessing(name: str) -> dict[str, Any]:
    """The evaluation transform timm's config prescribes at its test size, in the shape of
    accuracy's `_weights_transforms`: resize the short side to floor(crop / crop_pct), center
    crop, normalize (timm.data.transforms_factory's eval transform)."""
    import math

    m = resolve(name)
    crop = m.test_size[1]
    pct = m.cfg.get("test_crop_pct") if m.test_size != m.train_size else None
    pct = pct or m.cfg.get("crop_pct") or 0.875
    return {
        "resize": int(math.floor(crop / pct)),
        "crop": crop,
        "mean": list(m.cfg.get("mean") or ()) or None,
        "std": list(m.cfg.get("std") or ()) or None,
        "interpolation": m.cfg.get("interpolation") or "bilinear",
    }
