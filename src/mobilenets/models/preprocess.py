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
RESIZE_MODES = ("shorter", "squash", "pad")


def interpolation_mode(name: str) -> InterpolationMode:
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing that travels with the weights.

    ``resize="shorter"``: resize the shorter side to ``input_size / crop_pct`` then center-crop
    (timm/torchvision); ``resize="squash"``: resize the whole image to ``input_size`` square,
    ignoring the aspect ratio (what Google's TFLite models do); ``resize="pad"``: keep the aspect
    ratio, the longer side ``input_size``, zero padding bottom/right (Coral's detection examples).
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
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"invalid resize mode {self.resize!r}; valid: {', '.join(RESIZE_MODES)}")

    @classmethod
    def for_config(cls, cfg: ModelConfig, input_size: int | None = None, crop_pct: float = 0.875) -> Preprocess:
        return cls(cfg.resolution if input_size is None else input_size, crop_pct, tuple(cfg.mean), tuple(cfg.std))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Preprocess:
        return dataclasses.replace(self, **changes)

    def finish(self) -> list[v2.Transform]:
        """The steps after resizing, shared with training augmentation: to float, normalize."""
        from torchvision.transforms import v2

        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]

    def resize_steps(self) -> list[v2.Transform]:
        """Resizing to the input size, box-aware (torchvision.transforms.v2)."""
        from torchvision.transforms import v2

        interp, size = interpolation_mode(self.interpolation), self.input_size
        if self.resize == "squash":
            return [v2.Resize((size, size), interp, antialias=True)]
        if self.resize == "pad":
            return [v2.Resize(None, interp, max_size=size, antialias=True), _pad_bottom_right(size)]
        return [v2.Resize(math.floor(size / self.crop_pct), interp, antialias=True), v2.CenterCrop(size)]

    def eval_transform(self) -> v2.Compose:
        from torchvision.transforms import v2

        return v2.Compose([v2.ToImage(), *self.resize_steps(), *self.finish()])

    def boxes_to_image(self, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Boxes ``(x1, y1, x2, y2)`` normalized to the model's input -> pixels of the original image
        (``image_size`` = height, width)."""
        h, w = image_size
        if self.resize == "squash":
            return boxes * boxes.new_tensor([w, h, w, h])
        if self.resize == "pad":
            scale = self.input_size / max(h, w)  # the resized image sits at the top left
            return boxes * self.input_size / scale
        raise ValueError("boxes map back to the image only for the squash and pad resize modes")


def _pad_bottom_right(size: int) -> v2.Transform:
    """Zero padding to ``size`` x ``size`` at the bottom and right (boxes do not move)."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2._utils import query_size
    from torchvision.transforms.v2.functional import pad

    class PadBottomRight(v2.Transform):
        def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
            h, w = query_size(flat_inputs)
            return {"padding": [0, 0, size - w, size - h]}

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            return pad(inpt, params["padding"])

    return PadBottomRight()
