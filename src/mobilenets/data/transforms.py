"""Training augmentation (torchvision.transforms.v2); evaluation preprocessing lives with the model
(:class:`mobilenets.models.Preprocess`), since it travels with the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..models.preprocess import Preprocess, interpolation_mode

if TYPE_CHECKING:
    from torchvision.transforms import v2


def train_transform(preprocess: Preprocess, min_scale: float = 0.35, hflip: float = 0.5) -> v2.Compose:
    """RandomResizedCrop with a configurable lower scale bound (the V1 paper limits small crops)."""
    from torchvision.transforms import v2  # seconds to import: only when a transform is built

    if not 0 < min_scale <= 1:
        raise ValueError(f"invalid min_scale {min_scale}; it must be in (0, 1]")
    ops: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop(preprocess.input_size, scale=(min_scale, 1.0),
                             interpolation=interpolation_mode(preprocess.interpolation), antialias=True),
    ]
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    return v2.Compose(ops + preprocess.finish())


class DetectionTransform:
    """``(image, target) -> (normalized tensor, target)`` for detection, box-aware (v2 + tv_tensors).

    The target gains ``boxes`` in pixels of the model's input, and keeps the original image's
    ``orig_boxes`` and ``orig_size`` (height, width) for evaluation in the image's own pixels.
    Training adds, with ``ssd_augment``, the SSD augmentations - photometric distortion, zoom-out
    up to ``zoom_out``, IoU crop - and flips when ``hflip`` > 0, then drops the boxes a crop made
    degenerate. (The IoU crop costs ~20 ms an image here: the embedded data draws fresh canvases
    every epoch instead.)
    """

    def __init__(self, preprocess: Preprocess, train: bool, hflip: float = 0.5, zoom_out: float = 2.0,
                 ssd_augment: bool = True) -> None:
        from torchvision.transforms import v2

        steps: list[v2.Transform] = [v2.ToImage()]
        if train and ssd_augment:
            steps += [v2.RandomPhotometricDistort(p=0.5)]
            if zoom_out > 1:
                steps += [v2.RandomZoomOut(fill=0, side_range=(1.0, zoom_out), p=0.5)]
            steps += [v2.RandomIoUCrop()]
        if train and hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        steps += [*preprocess.resize_steps(), v2.SanitizeBoundingBoxes(labels_getter=_box_fields), *preprocess.finish()]
        self.transform = v2.Compose(steps)

    def __call__(self, img: Any, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2.functional import get_size

        size = tuple(get_size(img))
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)
        out, t = self.transform(img, {"boxes": boxes, "labels": target["labels"], "ignore": target["ignore"]})
        return out, {**t, "boxes": t["boxes"].as_subclass(torch.Tensor), "orig_boxes": target["boxes"],
                     "orig_labels": target["labels"], "orig_ignore": target["ignore"], "orig_size": size,
                     "image_id": target["image_id"]}


def _box_fields(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-box fields SanitizeBoundingBoxes must filter with the boxes."""
    target = inputs[1]
    return target["labels"], target["ignore"]


class SegmentationTransform:
    """``(image, mask) -> (normalized tensor, target)`` for segmentation (v2 + ``tv_tensors.Mask``).

    Training: scale jitter (the image's shorter side to ``scale_range`` x the input size), a random
    crop of the input size (padded with 0 and, in the mask, the ignore label), flips when ``hflip`` >
    0; the target is ``{"mask": [S, S] long}``. Evaluation: the model's own resize of the image; the
    target keeps the mask at the image's size (``orig_mask``, ``orig_size``), where it is scored.
    """

    def __init__(self, preprocess: Preprocess, train: bool, hflip: float = 0.5,
                 scale_range: tuple[float, float] = (0.5, 2.0), ignore_index: int = 255) -> None:
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        self.train = train
        size = preprocess.input_size
        if train:
            steps: list[v2.Transform] = [v2.ToImage()]
            if scale_range != (1.0, 1.0):
                steps.append(v2.RandomResize(max(1, int(size * scale_range[0])), int(size * scale_range[1]) + 1,
                                             interpolation_mode(preprocess.interpolation), antialias=True))
            steps.append(v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Mask: ignore_index, "others": 0}))
            if hflip > 0:
                steps.append(v2.RandomHorizontalFlip(hflip))
            self.transform = v2.Compose(steps + preprocess.finish())
        else:
            self.transform = preprocess.eval_transform()

    def __call__(self, img: Any, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """With no mask (prediction), the target only carries the image's size."""
        from torchvision import tv_tensors
        from torchvision.transforms.v2.functional import get_size

        size = tuple(get_size(img))
        if mask is None:
            if self.train:
                raise ValueError("training needs the mask")
            return self.transform(img), {"orig_size": size}
        if tuple(mask.shape) != size:
            raise ValueError(f"mask of size {tuple(mask.shape)} for an image of size {size}")
        if not self.train:
            return self.transform(img), {"orig_mask": mask, "orig_size": size}
        out, m = self.transform(img, tv_tensors.Mask(mask))
        return out, {"mask": m.as_subclass(torch.Tensor).long()}
