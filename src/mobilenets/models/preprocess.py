"""The input a model expects, as a record that travels with its weights (input size, crop,
mean/std, interpolation, resize mode), and the evaluation transform it implies.

torchvision is imported when a transform is built: it takes seconds to import, and building a
model or reading its cost needs no transform.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, check_input_size

if TYPE_CHECKING:
    from torchvision.transforms import InterpolationMode, v2

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def interpolation_mode(name: str) -> InterpolationMode:
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing that travels with the weights.

    ``resize="shorter"``: resize the shorter side to ``input_size / crop_pct`` then center-crop
    (timm/torchvision); ``resize="squash"``: resize the whole image to ``input_size`` square,
    ignoring the aspect ratio (what Google's TFLite classifiers do).
    """

    input_size: int
    crop_pct: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize: str = "shorter"

    def __post_init__(self) -> None:
        check_input_size(self.input_size)
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"invalid crop_pct {self.crop_pct}; it must be in (0, 1]")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"invalid interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        if self.resize not in ("shorter", "squash"):
            raise ValueError(f"invalid resize mode {self.resize!r}; valid: shorter, squash")

    @classmethod
    def for_config(cls, cfg: ModelConfig, input_size: int | None = None, crop_pct: float = 0.875) -> "Preprocess":
        return cls(cfg.resolution if input_size is None else input_size, crop_pct, tuple(cfg.mean), tuple(cfg.std))

    @classmethod
    def of(cls, model: Any) -> Preprocess:
        """What a loaded model's weights record (``weights_meta``), else its config's defaults."""
        meta = getattr(model, "weights_meta", None) or {}
        return cls.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else cls.for_config(model.config)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> "Preprocess":
        return dataclasses.replace(self, **changes)

    def finish(self) -> list[v2.Transform]:
        """The steps after resizing, shared with training augmentation: to float, normalize."""
        from torchvision.transforms import v2

        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]

    def eval_transform(self) -> v2.Compose:
        from torchvision.transforms import v2

        interp = interpolation_mode(self.interpolation)
        if self.resize == "squash":
            resize: list[v2.Transform] = [v2.Resize((self.input_size, self.input_size), interp, antialias=True)]
        else:
            scaled = math.floor(self.input_size / self.crop_pct)
            resize = [v2.Resize(scaled, interp, antialias=True), v2.CenterCrop(self.input_size)]
        return v2.Compose([v2.ToImage(), *resize, *self.finish()])
