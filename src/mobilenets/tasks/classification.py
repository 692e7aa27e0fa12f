"""Classification (the papers' ImageNet task): its metrics and how its predictions read.

:class:`ClassificationMeter` accumulates top-1/top-5, the loss and a confusion matrix batch by
batch on the device (no host synchronization per batch); :func:`top_k` turns logits into named
predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models import MobileNet, ModelConfig, Preprocess, build_arch, create_mobilenet, resolve_config
from ..models.spec import Layer, layer_shapes
from ..utils.textfmt import render_table, unreadable_note
from .confusion import precision_recall
from .labels import imagenet_classes
from .registry import ModelKind, Shapes, fields_of


@dataclass
class ClassificationEvalResult:
    top1: float  # percent
    top5: float
    loss: float
    count: int
    classes: list[str]
    confusion: torch.Tensor  # [true, predicted] counts
    skipped: list[str] = field(default_factory=list)  # unreadable files
    examples: list[Any] = field(default_factory=list)  # a few held-out images with predictions, for people

    @property
    def per_class(self) -> dict[str, float]:
        totals = self.confusion.sum(1).clamp_min(1)
        acc = self.confusion.diag() / totals * 100
        return {c: round(float(a), 4) for c, a in zip(self.classes, acc)}

    @property
    def precision_recall(self) -> dict[str, dict[str, float]]:
        """Per class: precision and recall (percent) and the number of held-out images."""
        return precision_recall(self.confusion, self.classes)

    def describe(self) -> str:
        """Per-class precision and recall as a table, then top-1/top-5 (what ``mobilenets eval`` prints)."""
        table = render_table(["class", "precision %", "recall %", "images"],
                             [[c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", v["support"]]
                              for c, v in self.precision_recall.items()], align="lrrr")
        return (f"{table}\n\ntop-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  loss {self.loss:.4f}  on {self.count} "
                f"images{unreadable_note(self.skipped)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": round(self.top1, 4),
            "top5": round(self.top5, 4),
            "loss": round(self.loss, 6),
            "count": self.count,
            "per_class": self.per_class,
            "precision_recall": self.precision_recall,
            "confusion": self.confusion.tolist(),
            "skipped": self.skipped,
        }


class ClassificationMeter:
    """Sums over batches of (logits, labels): cross-entropy, top-k hits and the confusion matrix."""

    def __init__(self, classes: Sequence[str], device: torch.device) -> None:
        self.classes = list(classes)
        n = len(self.classes)
        self.confusion = torch.zeros(n, n, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.top5_sum = torch.zeros((), device=device, dtype=torch.long)
        self.count = 0

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = len(self.classes)
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.topk(min(5, n), dim=1).indices
        self.confusion += torch.bincount(y * n + pred[:, 0], minlength=n * n).view(n, n)
        self.top5_sum += (pred == y[:, None]).any(1).sum()
        self.count += len(y)

    def result(self, skipped: list[str]) -> ClassificationEvalResult:
        if self.count == 0:
            raise ValueError("no readable evaluation images")
        conf = self.confusion.cpu()
        n = self.count
        return ClassificationEvalResult(top1=float(conf.diag().sum()) / n * 100, top5=float(self.top5_sum) / n * 100,
                          loss=float(self.loss_sum) / n, count=n, classes=self.classes, confusion=conf, skipped=skipped)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "predictions": [{"class": c, "prob": round(p, 6)} for c, p in self.top]}


def top_k(logits: torch.Tensor, classes: Sequence[str] | None, k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes of each row of ``logits``, named (indices when unnamed)."""
    probs = logits.float().softmax(1)
    names = list(classes) if classes is not None else [str(i) for i in range(probs.shape[1])]
    p, c = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(names[j], v) for j, v in zip(ci, pi)] for pi, ci in zip(p.tolist(), c.tolist())]


class Classifier(ModelKind):
    """The papers' MobileNets: every name no other kind takes (``0.75-MobileNet-128``)."""

    name = "classifier"
    task = "classification"
    catch_all = True
    pool_layer = "pool"
    config_type = ModelConfig
    model_type = MobileNet
    label_sets: ClassVar[dict[int, Callable[[], Sequence[str]]]] = {
        1000: imagenet_classes, 1001: lambda: ("background", *imagenet_classes())}

    def matches(self, name: str) -> bool:
        return True

    def parse(self, name: str, **overrides: Any) -> ModelConfig:
        return resolve_config(name, **overrides)

    def resolve(self, name: str | ModelConfig, **overrides: Any) -> ModelConfig:
        return resolve_config(name, **overrides)  # validates the overrides for a config too

    def backbone(self, cfg: ModelConfig) -> ModelConfig:
        return cfg

    def with_resolution(self, cfg: ModelConfig, resolution: int) -> ModelConfig:
        return cfg.replace(resolution=resolution)

    def head_key(self, cfg: ModelConfig) -> tuple[object, ...]:
        return ()

    def default_preprocess(self, cfg: ModelConfig) -> Preprocess:
        """Resize the shorter side and center-crop, as timm and torchvision do."""
        return Preprocess.for_config(cfg)

    def to_dict(self, cfg: ModelConfig) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}

    def from_dict(self, d: dict[str, Any]) -> ModelConfig:
        return ModelConfig(**fields_of(ModelConfig, {k: v for k, v in d.items() if k != "task"}))

    def layers(self, cfg: ModelConfig) -> list[Layer]:
        return build_arch(cfg).layers()

    def layer_shapes(self, cfg: ModelConfig, input_size: tuple[int, int]) -> Shapes:
        return layer_shapes(build_arch(cfg), input_size)

    def residual_blocks(self, cfg: ModelConfig) -> list[str]:
        return [f"blocks.{b.index}" for b in build_arch(cfg).blocks if b.residual]

    def example_targets(self, cfg: ModelConfig, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, max(cfg.num_classes, 1), (batch,), generator=generator)

    def build(self, cfg: ModelConfig) -> nn.Module:
        return MobileNet(cfg)

    def create(self, name: str | ModelConfig, **options: Any) -> nn.Module:
        """Also with ``features_only`` and ``out_indices`` (a backbone's feature maps, timm-style)."""
        return create_mobilenet(name, **options)
