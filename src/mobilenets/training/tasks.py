"""What training does differently per task: data, model, loss, evaluation and the numbers it
records. The loop (:mod:`mobilenets.training.loop`) asks the task object in :data:`TASKS` (keyed by
the task name of :mod:`mobilenets.tasks`' registry) and never tests which task it runs.

A task's evaluation returns a result whose ``primary`` number picks the best epoch (top-1 for
classification, COCO mAP@[.5:.95] for detection, mIoU for segmentation); ``row`` turns it into the
history's columns, and ``result_metrics`` names the columns a :class:`TrainResult` reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data import CopyPaste, collate, train_transform, with_transform
from ..data.annotations import normalized_boxes
from ..data.loaders import TransformedPairs, collate_targets
from ..data.transforms import DetectionTransform, SegmentationTransform
from ..models import ModelConfig, Preprocess
from ..tasks import Detector, TaskConfig, default_preprocess, kind_of, parse_model_name
from ..tasks.classification import ClassificationEvalResult, ClassificationMeter
from ..tasks.detection.boxes import Detections
from ..tasks.detection.metrics import CocoMeter, DetectionEvalResult
from ..tasks.segmentation.metrics import ConfusionMeter, SegmentationEvalResult
from ..utils.device import Precision
from . import distributed as dist
from .config import ResolvedConfig
from .report import BOX_SCORE, Example, to_uint8
from .step import Criterion, cross_entropy


class Classification:
    name = "classification"
    metrics = ("val_top1", "val_top5")  # the primary metric first
    metric_label = "top-1 (%)"
    #: TrainResult's numbers: name -> (history column, scale to the reported unit)
    result_metrics: ClassVar[dict[str, tuple[str, float]]] = {"top1": ("val_top1", 1.0), "top5": ("val_top5", 1.0)}
    train_accuracy = True  # a training step's hits are correct labels: shown as train top-1
    synthetic_data = "fake"  # the --data whose presets a throughput measurement takes
    collate = staticmethod(collate)

    def describe(self, m: dict[str, float]) -> str:
        return f"top-1 {m['top1']:.2f}% (top-5 {m['top5']:.2f}%)"

    def model_config(self, cfg: ResolvedConfig, classes: list[str]) -> TaskConfig:
        return parse_model_name(cfg.model, num_classes=len(classes),
                                **({"dropout": cfg.dropout} if cfg.dropout is not None else {}))

    def preprocess(self, model_cfg: TaskConfig, cfg: ResolvedConfig) -> Preprocess:
        return Preprocess.for_config(cast(ModelConfig, model_cfg), cfg.input_size, cfg.crop_pct)

    def fit_to_data(self, model_cfg: TaskConfig, splits: Any, cfg: ResolvedConfig) -> tuple[TaskConfig, str]:
        return model_cfg, ""

    def datasets(self, splits: Any, preprocess: Preprocess, cfg: ResolvedConfig) -> tuple[Dataset, Dataset]:
        return (with_transform(splits.train, train_transform(preprocess, cfg.min_scale, cfg.hflip)),
                self.val_dataset(splits.val, preprocess))

    def val_dataset(self, ds: Dataset, preprocess: Preprocess) -> Dataset:
        return with_transform(ds, preprocess.eval_transform())

    def criterion(self, model: nn.Module, cfg: ResolvedConfig) -> Criterion:
        return cross_entropy(cfg.label_smoothing)

    def evaluate(self, model: nn.Module, loader: DataLoader, classes: list[str], device: torch.device,
                 precision: Precision, channels_last: bool, preprocess: Preprocess, ctx: dist.DistContext,
                 progress: bool = False, examples: int = 0) -> ClassificationEvalResult:
        res = run_eval(model, loader, classes, device, precision, channels_last, progress, examples=examples,
                       preprocess=preprocess)
        return dist.reduce_eval(res, ctx)

    def row(self, ev: ClassificationEvalResult) -> dict[str, float]:
        return {"val_loss": ev.loss, "val_top1": ev.top1, "val_top5": ev.top5}


class _TargetTask:
    """What detection and segmentation share: batches of images with per-image targets, the model
    named by the config, and the model's own preprocessing."""

    collate = staticmethod(collate_targets)
    train_accuracy = False
    synthetic_data = "digits"

    def model_config(self, cfg: ResolvedConfig, classes: list[str]) -> TaskConfig:
        return parse_model_name(cfg.model, num_classes=len(classes))

    def preprocess(self, model_cfg: TaskConfig, cfg: ResolvedConfig) -> Preprocess:
        pre = default_preprocess(model_cfg)
        return pre if cfg.input_size is None else pre.replace(input_size=cfg.input_size)

    def fit_to_data(self, model_cfg: TaskConfig, splits: Any, cfg: ResolvedConfig) -> tuple[TaskConfig, str]:
        return model_cfg, ""


def _eval_batches(loader: DataLoader, device: torch.device, channels_last: bool, progress: bool,
                  skipped: list[str]) -> Iterator[tuple[torch.Tensor, list[dict[str, Any]]]]:
    """Evaluation batches on the device, with their targets; unreadable files are added to ``skipped``."""
    for x, targets, bad in tqdm(loader, desc="eval", disable=not progress, leave=False, unit="batch"):
        skipped += bad
        if not len(targets):
            continue
        x = x.to(device)
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), targets


class Detection(_TargetTask):
    name = "detection"
    metrics = ("val_map", "val_map50", "val_map75")
    metric_label = "COCO mAP (%)"
    result_metrics: ClassVar[dict[str, tuple[str, float]]] = {"map": ("val_map", 0.01), "map50": ("val_map50", 0.01)}

    def describe(self, m: dict[str, float]) -> str:
        return f"mAP {100 * m['map']:.2f} (mAP@0.5 {100 * m['map50']:.2f})"

    def fit_to_data(self, model_cfg: TaskConfig, splits: Any, cfg: ResolvedConfig) -> tuple[TaskConfig, str]:
        """With ``fit_anchors``, an SSD's anchor scales fitted to the training boxes, and what changed;
        without, advice when the boxes fit its anchors badly."""
        size, kind = cfg.input_size or model_cfg.resolution, kind_of(model_cfg)
        boxes = normalized_boxes(splits.train)
        if not cfg.fit_anchors:
            return model_cfg, kind.anchor_advice(model_cfg, boxes, size) if len(boxes) else ""
        return kind.fit_anchors(model_cfg, boxes, size)

    def datasets(self, splits: Any, preprocess: Preprocess, cfg: ResolvedConfig) -> tuple[Dataset, Dataset]:
        train = CopyPaste(splits.train, cfg.copy_paste) if cfg.copy_paste > 0 else splits.train
        return (TransformedPairs(train, DetectionTransform(preprocess, True, cfg.hflip, cfg.zoom_out, cfg.ssd_augment)),
                self.val_dataset(splits.val, preprocess))

    def val_dataset(self, ds: Dataset, preprocess: Preprocess) -> Dataset:
        return TransformedPairs(ds, DetectionTransform(preprocess, False))

    def criterion(self, model: nn.Module, cfg: ResolvedConfig) -> Criterion:
        detector = _detector(model)
        no_hits = torch.zeros((), dtype=torch.long)

        def loss(forward: Callable[..., Any], x: torch.Tensor,
                 targets: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
            return detector.loss(x, targets, forward), no_hits.to(x.device)
        return loss

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader: DataLoader, classes: list[str], device: torch.device,
                 precision: Precision, channels_last: bool, preprocess: Preprocess, ctx: dist.DistContext,
                 progress: bool = False, examples: int = 0) -> DetectionEvalResult:
        detector = _detector(model)
        detector.eval()
        meter, loss_sum, images = CocoMeter(classes), 0.0, 0
        skipped: list[str] = []
        kept: list[Example] = []
        for x, targets in _eval_batches(loader, device, channels_last, progress, skipped):
            with precision.autocast():
                loss, detections = detector.loss_and_detections(x, targets)
            loss_sum += float(loss) * len(x)
            images += len(x)
            for i, (det, t) in enumerate(zip(detections, targets)):
                meter.update(det, preprocess.boxes_to_image(det.boxes.cpu(), t["orig_size"]), t)
                if len(kept) < examples:
                    kept.append(_detection_example(x[i], det, t, classes, preprocess))
        res = _gathered_result(meter, loss_sum, images, skipped, ctx)
        res.examples = kept
        return res

    def row(self, ev: DetectionEvalResult) -> dict[str, float]:
        return {"val_loss": ev.loss, "val_map": 100 * ev.map, "val_map50": 100 * ev.map50, "val_map75": 100 * ev.map75}


class Segmentation(_TargetTask):
    name = "segmentation"
    metrics = ("val_miou", "val_pixel_acc")
    metric_label = "mIoU (%)"
    result_metrics: ClassVar[dict[str, tuple[str, float]]] = {"miou": ("val_miou", 0.01),
                                                               "pixel_acc": ("val_pixel_acc", 0.01)}

    def describe(self, m: dict[str, float]) -> str:
        return f"mIoU {100 * m['miou']:.2f} (pixel accuracy {100 * m['pixel_acc']:.2f})"

    def datasets(self, splits: Any, preprocess: Preprocess, cfg: ResolvedConfig) -> tuple[Dataset, Dataset]:
        scales = (cfg.min_scale, 1.0 / cfg.min_scale)  # DeepLab's 0.5-2.0 from min_scale 0.5; 1 = no jitter
        return (TransformedPairs(splits.train, SegmentationTransform(preprocess, True, cfg.hflip, scales)),
                self.val_dataset(splits.val, preprocess))

    def val_dataset(self, ds: Dataset, preprocess: Preprocess) -> Dataset:
        return TransformedPairs(ds, SegmentationTransform(preprocess, False))

    def criterion(self, model: nn.Module, cfg: ResolvedConfig) -> Criterion:
        ignore = _segmenter(model).config.ignore_index

        def loss(forward: Callable[..., Any], x: torch.Tensor,
                 targets: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
            logits = forward(x)
            masks = torch.stack([t["mask"] for t in targets]).to(logits.device)
            value = F.cross_entropy(logits.float(), masks, ignore_index=ignore)
            correct = ((logits.argmax(1) == masks) & (masks != ignore)).sum()
            return value, correct
        return loss

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader: DataLoader, classes: list[str], device: torch.device,
                 precision: Precision, channels_last: bool, preprocess: Preprocess, ctx: dist.DistContext,
                 progress: bool = False, examples: int = 0) -> SegmentationEvalResult:
        net = _segmenter(model)
        net.eval()
        meter, loss_sum, images = ConfusionMeter(classes, net.config.ignore_index), 0.0, 0
        skipped: list[str] = []
        kept: list[Example] = []
        for x, targets in _eval_batches(loader, device, channels_last, progress, skipped):
            with precision.autocast():
                low = net.forward_logits(x)
            for i, (logits, t) in enumerate(zip(low.float(), targets)):  # scored at each image's own size
                full = F.interpolate(logits[None], size=t["orig_size"], mode="bilinear",
                                     align_corners=net.config.align_corners)[0]
                mask = t["orig_mask"].to(device).long()
                loss_sum += float(F.cross_entropy(full[None], mask[None], ignore_index=net.config.ignore_index))
                meter.update(full.argmax(0), mask)
                if len(kept) < examples:
                    kept.append(_segmentation_example(x[i], full.argmax(0), mask, preprocess))
            images += len(x)
        res = _gathered_result(meter, loss_sum, images, skipped, ctx)
        res.examples = kept
        return res

    def row(self, ev: SegmentationEvalResult) -> dict[str, float]:
        return {"val_loss": ev.loss, "val_miou": 100 * ev.miou, "val_pixel_acc": 100 * ev.pixel_acc}


@torch.inference_mode()
def run_eval(
    model: nn.Module,
    loader: DataLoader,
    classes: list[str],
    device: torch.device,
    precision: Precision | None = None,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "eval",
    examples: int = 0,
    preprocess: Preprocess | None = None,
) -> ClassificationEvalResult:
    """Evaluate ``model`` on a loader yielding ``(images, labels, unreadable)`` batches; the first
    ``examples`` images are kept with their predictions (``preprocess`` turns them back into pixels)."""
    model.eval()
    precision = precision or Precision(None, device.type)
    meter = ClassificationMeter(classes, device)
    skipped: list[str] = []
    kept: list[Example] = []
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        skipped += bad
        if not len(y):
            continue
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            logits = model(x)
        meter.update(logits, y.to(device, non_blocking=True))
        if len(kept) < examples and preprocess is not None:
            probs = logits.float().softmax(1).cpu()
            for i in range(min(len(y), examples - len(kept))):
                p, truth = int(probs[i].argmax()), int(y[i])
                kept.append(Example(to_uint8(x[i], preprocess), f"{classes[p]} {float(probs[i, p]):.2f}\n(truth: "
                                    f"{classes[truth]})", p == truth))
    res = meter.result(skipped)
    res.examples = kept
    return res


def _detection_example(x: torch.Tensor, det: Detections, t: dict[str, Any], classes: list[str],
                       preprocess: Preprocess) -> Example:
    """A held-out image as the detector saw it, its detections (score >= BOX_SCORE) and its true boxes."""
    h, w = x.shape[-2:]
    keep = det.scores.cpu() >= BOX_SCORE
    boxes = det.boxes.cpu()[keep] * torch.tensor([w, h, w, h])
    names = [f"{classes[int(k) - 1]} {float(s):.2f}" for k, s in zip(det.labels.cpu()[keep], det.scores.cpu()[keep])]
    return Example(to_uint8(x, preprocess), f"{len(boxes)} found, {len(t['boxes'])} true", None, boxes, names,
                   t["boxes"].cpu())


def _segmentation_example(x: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor, preprocess: Preprocess) -> Example:
    """A held-out image as the segmenter saw it, with its predicted and true masks at that size."""
    size = (int(x.shape[-2]), int(x.shape[-1]))

    def resize(m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0].long().cpu()
    p, gt = resize(pred), resize(truth)
    valid = gt != 255
    acc = float((p[valid] == gt[valid]).float().mean()) if valid.any() else 0.0
    return Example(to_uint8(x, preprocess), f"pixel accuracy {100 * acc:.1f}%", None, pred_mask=p, true_mask=gt)


def _gathered_result(meter: Any, loss_sum: float, images: int, skipped: list[str], ctx: dist.DistContext) -> Any:
    """A dense task's result over every rank: the meters merged (``merge``), losses and counts summed."""
    if ctx.active:
        parts: list[Any] = dist.gather_objects((meter, loss_sum, images, skipped), ctx)
        meter = parts[0][0]
        meter.merge([p[0] for p in parts[1:]])
        loss_sum, images = sum(p[1] for p in parts), sum(p[2] for p in parts)
        skipped = [s for p in parts for s in p[3]]
    return meter.result(loss_sum / max(images, 1), skipped)


def _detector(model: nn.Module) -> Detector:
    m = getattr(model, "module", model)  # DDP
    if not isinstance(m, Detector):
        raise TypeError("a detection task needs a detector (loss, loss_and_detections, detect); got "
                        f"{type(m).__name__}")
    return m


def _segmenter(model: nn.Module) -> Any:
    return getattr(model, "module", model)  # DDP


Task = Classification | Detection | Segmentation
TASKS: dict[str, Task] = {"classification": Classification(), "detection": Detection(),
                          "segmentation": Segmentation()}
