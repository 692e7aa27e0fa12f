"""The model-kind registry: what a kind of model (classifier, SSD/SSDLite, Faster R-CNN, DeepLab)
provides to every layer above ``tasks/``, in one object per kind.

Higher layers never ask "which kind is this?" themselves: they look the kind up
(:func:`kind_of` for a config, a model or a name; :func:`task_kind` for a task name) and call it. A
new kind is a folder under ``tasks/`` with a :class:`ModelKind` subclass, registered once in
``tasks/__init__.py``; the layers above key their own per-task code (data readers, training's
evaluation loop, ``predict``'s output) by :attr:`ModelKind.task`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..models import Preprocess
from ..models.spec import Layer

#: Every export format (``mobilenets export --format``); a kind lists the ones it supports.
EXPORT_FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8", "pte", "torchscript", "pt2")
#: Layers with their input and output sizes, in module order (what the cost model sums).
Shapes = list[tuple[Layer, tuple[int, int], tuple[int, int]]]
Outputs = torch.Tensor | tuple[torch.Tensor, ...]


class ModelKind:
    """One kind of model, as every layer sees it. Subclasses set the class attributes and the
    methods that raise here; the rest has defaults that fit a MobileNet with a task head."""

    name: ClassVar[str]  # "classifier", "ssd", "faster_rcnn", "deeplabv3"
    catch_all: ClassVar[bool] = False  # names no other kind matches are this kind's (errors list its names)
    task: ClassVar[str]  # "classification", "detection", "segmentation": the metrics and data it takes
    config_type: ClassVar[type]
    model_type: ClassVar[type[nn.Module]]
    formats: ClassVar[tuple[str, ...]] = EXPORT_FORMATS
    formats_note: ClassVar[str] = ""  # why the other formats do not take it
    #: ONNX: traced by torch.export ("dynamo", any batch) or by the TorchScript tracer ("torchscript", batch 1)
    onnx_exporter: ClassVar[str] = "dynamo"
    int8_ops: ClassVar[tuple[str, ...] | None] = None  # ONNX op types an int8 export quantizes (None: all)
    agreement_of: ClassVar[str] = "top-1"  # what int8 and float agreement is measured on
    output_names: ClassVar[tuple[str, ...]] = ("output",)
    pool_layer: ClassVar[str | None] = None  # the global pool's module (a quantized file's AVERAGE_POOL grid)
    argmax_output: ClassVar[bool] = False  # an export can end in the class of every pixel (segmenters)
    #: Class names of the datasets Google's weights for this kind were trained on, by class count
    label_sets: ClassVar[dict[int, Callable[[], Sequence[str]]]] = {}

    # names, configs, modules
    def matches(self, name: str) -> bool:
        raise NotImplementedError

    def parse(self, name: str, **overrides: Any) -> Any:
        raise NotImplementedError

    def build(self, cfg: Any) -> nn.Module:
        return self.model_type(cfg)

    def resolve(self, name: Any, **overrides: Any) -> Any:
        """A name's config, or a config of this kind, with ``overrides`` applied."""
        if isinstance(name, str):
            return self.parse(name, **overrides)
        return name.replace(**overrides) if overrides else name

    def create(self, name: Any, **options: Any) -> nn.Module:
        """A model by name (or config) with random weights, ``options`` applied."""
        return self.build(self.resolve(name, **options))

    def backbone(self, cfg: Any) -> Any:
        """The classifier config of the MobileNet inside (the config itself for a classifier)."""
        return cfg.backbone

    def with_resolution(self, cfg: Any, resolution: int) -> Any:
        return cfg.replace(backbone=cfg.backbone.replace(resolution=resolution))

    def arch_key(self, cfg: Any) -> tuple[object, ...]:
        """What a weights file must match of a requested model: the head (:meth:`head_key`), the
        backbone's family, width and variant (not the resolution, which any input size serves)."""
        b = self.backbone(cfg)
        return (*self.head_key(cfg), b.family, b.alpha, b.variant)

    def head_key(self, cfg: Any) -> tuple[object, ...]:
        """What tells this kind's heads apart in :meth:`arch_key`."""
        return (self.name,)

    def default_preprocess(self, cfg: Any) -> Preprocess:
        """The input the model expects when its weights record nothing else: detectors and segmenters
        squash the whole image to the input size (TF's SSDs, Google's DeepLab files), since cropping
        would cut objects off."""
        b = self.backbone(cfg)
        return Preprocess(cfg.resolution, 1.0, b.mean, b.std, resize="squash")

    def default_classes(self, num_classes: int) -> list[str] | None:
        names = self.label_sets.get(num_classes)
        return list(names()) if names else None

    def to_dict(self, cfg: Any) -> dict[str, Any]:
        """A JSON-ready record of a config (weights files and run folders keep it)."""
        d = _plain_dataclass(cfg)
        d["task"] = self.task
        return d

    def from_dict(self, d: dict[str, Any]) -> Any:
        from ..models import ModelConfig

        d = {k: v for k, v in d.items() if k != "task"}
        backbone = ModelConfig(**fields_of(ModelConfig, d.pop("backbone")))
        return self.config_type(backbone, **fields_of(self.config_type, d))

    # the cost model and weights conversion
    def layers(self, cfg: Any) -> list[Layer]:
        """Every conv and FC layer in module order (how converters pair a file's tensors with ours)."""
        raise NotImplementedError

    def layer_shapes(self, cfg: Any, input_size: tuple[int, int]) -> Shapes:
        raise NotImplementedError

    def repeats(self, cfg: Any) -> dict[str, int]:
        """Layers that run more than once per image (a Faster R-CNN's per-proposal layers)."""
        return {}

    def residual_blocks(self, cfg: Any) -> list[str]:
        """Our names of the residual blocks, in order (a TFLite file's ADDs)."""
        from ..models.spec import build_arch

        return [f"backbone.blocks.{b.index}" for b in build_arch(self.backbone(cfg)).blocks if b.residual]

    def output_layer(self, cfg: Any) -> str | None:
        """The layer whose quantization grid is the whole model's output (a quantized file that
        upsamples its uint8 logits), else None."""
        return None

    # inference and export
    def pipeline(self, folded: nn.Module, input_size: int | tuple[int, int] | None = None, *, nms: bool = True,
                 argmax: bool = False) -> tuple[nn.Module, list[str]]:
        """What an export and a torch session run at ``input_size`` (``folded``: the model, BN folded,
        in eval mode), and its output names."""
        if argmax and not self.argmax_output:
            raise ValueError("argmax applies to segmenters only")
        return self._pipeline(folded, input_size, nms, argmax)

    def _pipeline(self, folded: nn.Module, input_size: int | tuple[int, int] | None, nms: bool,
                  argmax: bool) -> tuple[nn.Module, list[str]]:
        return folded, list(self.output_names)

    def finish(self, cfg: Any, outputs: Outputs) -> Outputs:
        """What runs after an exported graph that ends early (a detector's NMS after our TFLite and
        ExecuTorch files); the outputs as they are otherwise."""
        return outputs

    # training
    def fit_anchors(self, cfg: Any, boxes: torch.Tensor, input_size: int) -> tuple[Any, str]:
        """The config with its anchors fitted to the training ``boxes`` (normalized), and what changed;
        unchanged for a kind without anchors of ours."""
        return cfg, ""

    def anchor_advice(self, cfg: Any, boxes: torch.Tensor, input_size: int) -> str:
        """What to try when the training ``boxes`` (normalized) fit the anchors badly; "" when they fit."""
        return ""

    def model_for_boxes(self, cfg: Any, boxes: Callable[[], torch.Tensor], input_size: int | None) -> tuple[Any, str]:
        """The model to train when the user named none, given a reader of the training ``boxes``
        (normalized; called only by a kind that looks at them) and the input size the user named (None: the
        kind may choose the model's resolution), and why it differs; ``cfg`` and "" here."""
        return cfg, ""

    def example_targets(self, cfg: Any, batch: int, size: int, generator: torch.Generator) -> Any:
        """Synthetic training targets for ``batch`` images of ``size`` pixels (throughput measurements)."""
        raise NotImplementedError


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain_dataclass(obj)
    return [_plain(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def _plain_dataclass(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def fields_of(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """``d``'s items as keyword arguments of the dataclass ``cls`` (lists back to tuples); unknown keys
    are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys in metadata: {unknown}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a kind; the first registered of a task is the one :func:`task_kind` returns."""
    if kind.name in _KINDS:
        raise ValueError(f"model kind {kind.name!r} is already registered")
    if kind.catch_all and any(k.catch_all for k in _KINDS.values()):
        raise ValueError("only one kind can take the names no other kind matches")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> tuple[ModelKind, ...]:
    return tuple(_KINDS.values())


def task_names() -> tuple[str, ...]:
    """Every task, in registration order."""
    return tuple(dict.fromkeys(k.task for k in _KINDS.values()))


def task_kind(task: str) -> ModelKind:
    """The main kind of a task (its name's default when a name is not enough)."""
    for k in _KINDS.values():
        if k.task == task:
            return k
    raise ValueError(f"unknown task {task!r}; valid: {', '.join(task_names())}")


def kind_of(obj: Any) -> ModelKind:
    """The kind of a model name, a config or a model (a wrapped one too: DDP's ``module``)."""
    if isinstance(obj, str):
        named = [k for k in _KINDS.values() if k.matches(obj)]
        return next((k for k in named if not k.catch_all), named[0])
    obj = getattr(obj, "module", obj)
    cfg = getattr(obj, "config", obj)
    for k in _KINDS.values():
        if isinstance(cfg, k.config_type):
            return k
    raise TypeError(f"not a mobilenets model, config or name: {type(obj).__name__}")
