"""Weights for a measured accuracy: a local state-dict file or a torchvision weights name.

Weights: a local state-dict file (`.pt`/`.pth`; a `module.` or `_orig_mod.` prefix on every key
is stripped; a checkpoint holding the state dict under `state_dict` or `model` is accepted), or
a torchvision weights name such as `ResNet18_Weights.IMAGENET1K_V1`, looked up only in the local
torch hub cache (`torch.hub.get_dir()/checkpoints/<file name of the weights' URL>`). Nothing is
ever downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.core.errors import AccuracyError
from cnnbench.core.text import one_line
from cnnbench.results.checksums import ChecksumError, verify_sidecar

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


__all__ = ["is_torchvision_weights_name", "weights_path", "load_weights"]

_KEYS_SHOWN = 3  # mismatching state-dict keys named in an error
_TV_WEIGHTS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_Weights\.[A-Za-z0-9_]+$")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile's wrapper
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")  # published googlenet/inception heads


def is_torchvision_weights_name(text: str) -> bool:
    """Whether `text` names torchvision weights (`ResNet18_Weights.IMAGENET1K_V1`), not a file."""
    return bool(_TV_WEIGHTS_NAME.match(text)) and not os.path.exists(text)


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
        raise AccuracyError(f"unknown torchvision weights {weights!r}: {one_line(exc)}") from None
    name = os.path.basename(urlparse(enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _read_state_dict(path: Path, what: str) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":  # timm's and the Hugging Face cache's format (timm needs safetensors)
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated file, a pickle that is not a tensor dict...
        raise AccuracyError(f"cannot read weights {path}: {one_line(exc)}") from None
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
        `FILE.sha256` sidecar (`cnnbench.results.checksums`) it was checked against.

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
