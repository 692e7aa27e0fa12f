"""Training augmentation (torchvision.transforms.v2); evaluation preprocessing lives with the model
(:class:`mobilenets.models.Preprocess`), since it travels with the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models.preprocess import Preprocess, interpolation_mode

if TYPE_CHECKING:
    from torchvision.transforms import v2


def train_transform(pre: Preprocess, min_scale: float = 0.35, hflip: float = 0.5) -> v2.Compose:
    """RandomResizedCrop with a configurable lower scale bound (the V1 paper limits small crops)."""
    from torchvision.transforms import v2  # seconds to import: only when a transform is built

    if not 0 < min_scale <= 1:
        raise ValueError(f"invalid min_scale {min_scale}; it must be in (0, 1]")
    ops: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop(pre.input_size, scale=(min_scale, 1.0),
                             interpolation=interpolation_mode(pre.interpolation), antialias=True),
    ]
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    return v2.Compose(ops + pre.finish())
