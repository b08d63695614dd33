"""The one leaf data type of the model registry: what the catalog and the timm zoo say of a model.

Both `catalog` and `timm_zoo` build `ModelInfo` values; keeping the type here (as timm keeps
`PretrainedCfg` in `_pretrained.py`) lets each import it without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_size: tuple[int, int, int]  # default (C, H, W)
    num_classes: int
    source: str  # "torchvision", "seeds" or "timm"
    description: str = ""
