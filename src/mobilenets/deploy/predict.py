"""Prediction on image files through any runtime, batched, with unreadable files reported instead of
stopping the run: a classifier's top-k classes, a detector's boxes in the image's own pixels, or a
segmenter's classes with their pixel fractions (optionally drawn into pictures)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import Transformed, find_images, load_image, make_loader
from ..data.loaders import TransformedPairs, collate_targets
from ..data.transforms import DetectionTransform, SegmentationTransform
from ..models import Preprocess, check_input_size
from ..tasks import classification, default_preprocess, task_of
from ..tasks.classification import Prediction
from ..utils.device import pick_device
from ..utils.fsutil import atomic_path
from .runtime_choice import open_session
from .sessions import Session


@dataclass
class DetectionPrediction:
    path: str
    detections: list[dict[str, Any]]  # label, class_id, score, box [xmin, ymin, xmax, ymax] in pixels

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "detections": self.detections}


@dataclass
class SegmentationPrediction:
    path: str
    classes: list[dict[str, Any]]  # label, class_id, fraction of the pixels; largest first

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "classes": self.classes}


@dataclass
class PredictResult:
    predictions: list[Prediction | DetectionPrediction | SegmentationPrediction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "path: reason" for each unreadable file

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": [p.to_dict() for p in self.predictions], "errors": self.errors}


class _Files(Dataset):
    """Image files; for detection each comes with an empty target that carries its size through."""

    def __init__(self, files: list[Path], with_target: bool = False) -> None:
        self.files, self.with_target = files, with_target

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        img = load_image(self.files[i])
        if not self.with_target:
            return img, i
        return img, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                     "ignore": torch.zeros(0, dtype=torch.bool), "image_id": i}


class _InLayout:
    """A transform whose image tensor comes out in the session's layout: CHW as it is, or HWC as a view
    that the batch's stacking copies once (the session then takes the batch without a transpose)."""

    def __init__(self, transform: Any, layout: str) -> None:
        self.transform, self.layout = transform, layout

    def __call__(self, *args: Any) -> Any:
        out = self.transform(*args)
        if self.layout == "NCHW":
            return out
        if isinstance(out, tuple):
            return (out[0].permute(1, 2, 0), *out[1:])
        return out.permute(1, 2, 0)


def predict(
    weights: str | Path | nn.Module,
    inputs: list[str | Path],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    device: str = "auto",
    runtime: str = "torch",
    workers: int = 0,
    input_size: int | None = None,
    score_threshold: float = 0.3,
    save_vis: str | Path | None = None,
) -> PredictResult:
    """Top-k classes (classifiers), detections with a score >= ``score_threshold`` (detectors) or the
    classes found with their pixel fractions (segmenters) for each image file; folders are searched
    recursively.

    ``weights``: any weights file we load, a published id, a model, or an exported ``.onnx``,
    ``.tflite`` or ``.pte`` file (ours or Google's); ``runtime``: see :func:`open_session` (``auto``: the
    fastest). ``input_size`` overrides the size the weights' preprocessing records. ``save_vis``: a
    folder for the images with their boxes drawn, or a segmenter's masks and overlays.
    """
    if input_size is not None:
        check_input_size(input_size)
    if top_k < 1:
        raise ValueError(f"invalid top-k {top_k}; it must be >= 1")
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"invalid score threshold {score_threshold}; it must be in [0, 1]")
    files = find_images(list(inputs))
    if not files:
        raise ValueError("no images given (or none found in the given folders)")
    session = open_session(weights, runtime, device=str(pick_device(device)), batch_size=batch_size)
    meta = session.meta
    if meta.get("preprocessing"):
        pre = Preprocess.from_dict(meta["preprocessing"])
    elif session.config is not None:
        pre = default_preprocess(session.config)
    else:
        raise ValueError("this file records no preprocessing; export it with mobilenets export")
    if input_size is not None:
        pre = pre.replace(input_size=input_size)
    task = task_of(session.config) if session.config is not None else meta.get("task", "classification")
    options = _Options(meta.get("classes"), batch_size, workers, top_k, score_threshold, save_vis)
    return PREDICTORS[task](session, files, pre, options)


@dataclass
class _Options:
    classes: list[str] | None
    batch_size: int
    workers: int
    top_k: int
    score_threshold: float
    save_vis: str | Path | None


def _classify(session: Session, files: list[Path], preprocess: Preprocess, opts: _Options) -> PredictResult:
    result = PredictResult()
    ds = Transformed(_Files(files), _InLayout(preprocess.eval_transform(), session.layout))
    for x, idx, bad in make_loader(ds, opts.batch_size, workers=opts.workers):
        result.errors += bad
        if len(idx):
            tops = classification.top_k(torch.from_numpy(session.run(x, session.layout)), opts.classes, opts.top_k)
            result.predictions += [Prediction(str(files[i]), top) for i, top in zip(idx.tolist(), tops)]
    return result


def _detect(session: Session, files: list[Path], preprocess: Preprocess, opts: _Options) -> PredictResult:
    classes, threshold, save_vis = opts.classes, opts.score_threshold, opts.save_vis
    result = PredictResult()
    transform = _InLayout(DetectionTransform(preprocess, False), session.layout)
    ds = TransformedPairs(_Files(files, with_target=True), transform)
    for x, targets, bad in make_loader(ds, opts.batch_size, workers=opts.workers, collate_fn=collate_targets):
        result.errors += bad
        if not targets:
            continue
        boxes, scores, labels, counts = session.run(x, session.layout)
        for b, s, lab, n, t in zip(boxes, scores, labels, counts, targets):
            keep = np.nonzero(s[: int(n)] >= threshold)[0]
            px = preprocess.boxes_to_image(torch.from_numpy(b[keep]), t["orig_size"]).tolist()
            path = files[t["image_id"]]
            dets = [{"label": classes[int(lab[i]) - 1] if classes else str(int(lab[i])), "class_id": int(lab[i]),
                     "score": round(float(s[i]), 6), "box": [round(v, 2) for v in box]} for i, box in zip(keep, px)]
            result.predictions.append(DetectionPrediction(str(path), dets))
            if save_vis is not None:
                draw_detections(path, dets, Path(save_vis) / f"{path.stem}.png")
    return result


class _Segmentable:
    """An image file's input tensor, with its index and size (no mask to read)."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.transform = SegmentationTransform(preprocess, False)

    def __call__(self, img: Any, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        x, target = self.transform(img)
        return x, {**target, "image_id": index}


def _segment(session: Session, files: list[Path], preprocess: Preprocess, opts: _Options) -> PredictResult:
    """Logits upsampled to each image's own size, then the class of every pixel (an export that ends
    in argmax gives classes at the input size: resized with nearest neighbours)."""
    import torch.nn.functional as F

    classes, save_vis = opts.classes, opts.save_vis
    result = PredictResult()
    align = getattr(session.config, "align_corners", True)  # exports record no config: TF's convention
    ds = TransformedPairs(_Files(files), _InLayout(_Segmentable(preprocess), session.layout))
    for x, targets, bad in make_loader(ds, opts.batch_size, workers=opts.workers, collate_fn=collate_targets):
        result.errors += bad
        if not targets:
            continue
        out = torch.from_numpy(np.asarray(session.run(x, session.layout)))
        for o, t in zip(out, targets):
            if o.dim() == 3:  # logits
                mask = F.interpolate(o[None].float(), size=t["orig_size"], mode="bilinear", align_corners=align)[0]
                mask = mask.argmax(0)
            else:
                mask = F.interpolate(o[None, None].float(), size=t["orig_size"], mode="nearest")[0, 0].long()
            path = files[t["image_id"]]
            ids, counts = mask.unique(return_counts=True)
            found = [{"label": classes[int(k)] if classes and int(k) < len(classes) else str(int(k)),
                      "class_id": int(k), "fraction": round(float(c) / mask.numel(), 6)}
                     for k, c in sorted(zip(ids.tolist(), counts.tolist()), key=lambda kc: -kc[1])]
            result.predictions.append(SegmentationPrediction(str(path), found))
            if save_vis is not None:
                draw_segmentation(path, mask, Path(save_vis))
    return result


#: How each task's predictions are made and read (keyed by task name: a new task adds its own)
PREDICTORS: dict[str, Callable[[Session, list[Path], Preprocess, _Options], PredictResult]] = {
    "classification": _classify, "detection": _detect, "segmentation": _segment}


def draw_segmentation(image: Path, mask: torch.Tensor, folder: Path) -> tuple[Path, Path]:
    """``<stem>_mask.png`` (uint8 class ids at the image's size) and ``<stem>_overlay.png`` (each class
    but the background in its own colour over the image, torchvision's draw_segmentation_masks)."""
    from matplotlib import colormaps
    from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_segmentation_masks

    folder.mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path = folder / f"{image.stem}_mask.png", folder / f"{image.stem}_overlay.png"
    with atomic_path(mask_path) as tmp:
        to_pil_image(mask.to(torch.uint8)).save(tmp, format="PNG")
    img = pil_to_tensor(load_image(image))
    ids = [k for k in mask.unique().tolist() if k != 0]
    if ids:
        palette = colormaps["hsv"]  # saturated hues, spread by the golden ratio
        colors = [tuple(int(255 * c) for c in palette((k * 0.618) % 1)[:3]) for k in ids]
        img = draw_segmentation_masks(img, torch.stack([mask == k for k in ids]), alpha=0.55, colors=colors)
    with atomic_path(overlay_path) as tmp:
        to_pil_image(img).save(tmp, format="PNG")
    return mask_path, overlay_path


def draw_detections(image: Path, detections: list[dict[str, Any]], out: Path) -> Path:
    """The image with its boxes and "label score" captions (torchvision's draw_bounding_boxes), as PNG."""
    from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes

    img = pil_to_tensor(load_image(image))
    if detections:
        boxes = torch.tensor([d["box"] for d in detections], dtype=torch.float32)
        img = draw_bounding_boxes(img, boxes, [f"{d['label']} {d['score']:.2f}" for d in detections], colors="red",
                                  width=max(2, img.shape[-1] // 200))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        to_pil_image(img).save(tmp, format="PNG")
    return out
