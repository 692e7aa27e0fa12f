"""Training options: one dataclass whose fields carry their help text (the CLI flags are generated
from it), the data presets and recipes that fill what the user leaves unset, and validation."""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import data_task, default_workers, load_task_splits, resolve_data
from ..data.annotations import normalized_boxes
from ..models import check_input_size
from ..tasks import kind_of, parse_model_name, task_of
from ..utils.device import AMP_CHOICES

# Defaults that depend on the data: the embedded digits are 8x8 images, so a small model at 32 px,
# mild crops, no flips (a flipped digit is another symbol) and more weight decay for 1,437 images
# (chosen by held-out accuracy over 3 seeds; see README "Results").
DATA_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(model="0.5-MobileNetV2-32", epochs=40, batch_size=64, min_scale=0.8, hflip=0.0, crop_pct=1.0,
                   weight_decay=1e-4, amp="off"),
    "fake": dict(model="0.25-MobileNet-32", epochs=1, batch_size=32, min_scale=0.5, hflip=0.5, crop_pct=1.0, amp="off"),
    "cifar10": dict(model="1.0-MobileNetV2-32", epochs=60, batch_size=128, min_scale=0.5, hflip=0.5, crop_pct=1.0,
                    amp="off"),
    "cifar100": dict(model="1.0-MobileNetV2-32", epochs=60, batch_size=128, min_scale=0.5, hflip=0.5, crop_pct=1.0,
                     amp="off"),
    "folder": dict(model="1.0-MobileNetV2-224", epochs=90, batch_size=64, min_scale=0.35, hflip=0.5, crop_pct=0.875,
                   amp="auto"),
}
DATA_PRESETS["shards"] = DATA_PRESETS["folder"]  # tar shards of an image folder: the same defaults

# Detection presets. The embedded canvases are 96 px with digits of 40-56 px and no flips, for
# SSDLite at output stride 8 (at 32 its few coarse cells learn the digits' classes far too slowly),
# trained like the segmentation default; real photos get the SSD augmentations (flips, zoom-out up
# to 4x) and TF's SSDLite at 320 px.
DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(model="0.5-SSDLite-MobileNetV2-96-os8", epochs=6, batch_size=16, lr=0.1, hflip=0.0,
                   ssd_augment=False, zoom_out=1.0, min_scale=1.0, crop_pct=1.0, weight_decay=4e-5,
                   zero_init_residual=True, amp="off"),
    "coco": dict(model="1.0-SSDLite-MobileNetV2-320", epochs=60, batch_size=32, hflip=0.5, ssd_augment=True,
                 zoom_out=4.0, min_scale=1.0, crop_pct=1.0, amp="auto"),
}
DETECTION_PRESETS["voc"] = {**DETECTION_PRESETS["coco"], "model": "1.0-SSDLite-MobileNetV2-300"}
DETECTION_PRESETS["yolo"] = DETECTION_PRESETS["coco"]
# Segmentation presets. The embedded canvases: no flips, no scale jitter (min_scale is the lower
# bound of the jitter, 1 = none), output stride 8 (at 16 the logit grid is too coarse for the
# strokes), a high learning rate, batch 16 (per image seen it learns the digits' classes much faster
# than 32) and residual blocks started as the identity (training from scratch in minutes); real
# photos: DeepLab's 0.5-2.0 jitter, flips, 513 px crops.
SEGMENTATION_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(model="0.5-DeepLabV3-MobileNetV2-96-os8", epochs=12, batch_size=16, lr=0.1, hflip=0.0,
                   min_scale=1.0, crop_pct=1.0, weight_decay=4e-5, zero_init_residual=True,
                   amp="off"),
    "voc_seg": dict(model="1.0-DeepLabV3-MobileNetV2-513", epochs=60, batch_size=16, hflip=0.5, min_scale=0.5,
                    crop_pct=1.0, amp="auto"),
}
SEGMENTATION_PRESETS["masks"] = SEGMENTATION_PRESETS["voc_seg"]
TASK_PRESETS = {"classification": DATA_PRESETS, "detection": DETECTION_PRESETS,
                "segmentation": SEGMENTATION_PRESETS}

# Fine-tuning (``--init``): a few hundred photos and published weights. They replace the data
# preset's and the recipe's values, and every flag overrides them (README "Real data" gives the
# measurements behind them).
FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    "classification": dict(epochs=6, batch_size=32, lr=0.002, warmup_epochs=0.5, min_scale=0.5, freeze_bn=True),
    # head_lr_mult: the new layers (extras, top-down sums, predictors; randomly initialised) at 6x the
    # backbone's lr: facemask 0.544 / 0.536 / 0.532 mAP@0.5 (seeds 0, 1, 2) against 0.508 / 0.523 / 0.518
    # at 1x (3x: 0.525 / 0.543; 10x: 0.538); raccoon 0.942
    # copy_paste: facemask 0.570 / 0.545 / 0.571 mAP@0.5 (seeds 0, 1, 2) against 0.553 / 0.558 / 0.543
    # without, the rare class 0.26 / 0.18 / 0.25 against 0.18 / 0.20 / 0.17 (data.copy_paste)
    "detection": dict(batch_size=16, optimizer="adamw", lr=0.002, head_lr_mult=6.0, warmup_epochs=1.0,
                      freeze_bn=False, freeze_stages=3, zoom_out=1.0, ssd_augment=False, copy_paste=0.5),
    # AdamW as detection: on raccoon photos with masks drawn from the boxes, 0.805 / 0.795 mIoU (seeds 0, 1)
    # against 0.779 / 0.781 for SGD at lr 0.01 (benchmarks/finetune_real.py --jobs raccoon-seg)
    "segmentation": dict(batch_size=8, optimizer="adamw", lr=0.002, warmup_epochs=1.0, freeze_bn=False,
                         freeze_stages=3),
}

_EXAMPLE_MODEL = {"detection": "1.0-SSDLite-MobileNetV2-320", "segmentation": "1.0-DeepLabV3-MobileNetV2-257"}

#: A dense task's fine-tuning length in training images seen: the epochs depend on the data's size
#: (raccoon's 160 photos: 30 epochs; facemask's 677: 10, which with the GIoU loss gave 0.616 / 0.587 / 0.640
#: mAP@0.5 with seeds 0 / 1 / 2 against 0.594 / 0.596 / 0.595 for 8), within FINETUNE_EPOCHS.
FINETUNE_IMAGES = {"detection": 6800, "segmentation": 4000}
FINETUNE_EPOCHS = (6, 30)
#: ... evaluated about this many times (``eval_every``): on facemask an evaluation costs a quarter of an epoch.
FINETUNE_EVALS = 4


def init_model(init: str, default: str) -> tuple[str, bool]:
    """The model to fine-tune when ``--init`` names one and ``--model`` none, and whether it is the init's
    own: the init's own model when it is of the task (a classifier, or a detector to fine-tune), else the
    task's default model on the init's backbone (``mobilenet_v1_0.25_224.tflite`` on a VOC folder:
    ``0.25-SSDLite-MobileNet-300``). Why: with V2 1.0 as the default, a V1 0.25 file failed with "no
    tensor matches". ``default`` when the file cannot be read here (training reports why)."""
    from ..weights import load_init_state

    cfg = parse_model_name(default)
    backbone = getattr(cfg, "backbone", cfg)
    try:
        source = load_init_state(init, backbone).config
    except (ValueError, OSError):
        return default, False
    if task_of(source) == task_of(cfg):
        return source.name, True
    src = getattr(source, "backbone", source)
    arch = backbone.replace(family=src.family, alpha=src.alpha)  # type: ignore[union-attr]
    return (cfg.replace(backbone=arch) if hasattr(cfg, "backbone") else arch).name, False


def data_model(name: str, input_size: int | None, splits: Callable[[], Any]) -> tuple[str, str]:
    """The model to train when the user named none (``name``: the task's default, or on the init's
    backbone) as the training data asks for it, and why it differs (:meth:`ModelKind.model_for_boxes`:
    a detector's ``-p3`` or ``-p2`` for small objects); ``splits`` reads the data's splits."""
    cfg = parse_model_name(name)
    chosen, why = kind_of(cfg).model_for_boxes(cfg, lambda: normalized_boxes(splits().train), input_size)
    return chosen.name, why


def finetune_epochs(images: int, train_size: int) -> int:
    lo, hi = FINETUNE_EPOCHS
    return min(max(round(images / max(train_size, 1)), lo), hi)


# Recipes (README "Training recipes" gives the sources). ``lr`` is per ``lr_batch`` images.
RECIPES: dict[str, dict[str, Any]] = {
    # Both papers: RMSProp (TF) decay 0.9 momentum 0.9, lr 0.045 (per 96 images), x0.98 per epoch,
    # weight decay 4e-5; TF-slim's opt_epsilon 1.0.
    "paper": dict(optimizer="rmsprop_tf", lr=0.045, lr_batch=96, momentum=0.9, weight_decay=4e-5,
                  schedule="exponential", warmup_epochs=0.0, label_smoothing=0.0),
    # The modern baseline: SGD + Nesterov momentum, linear warmup, cosine to zero.
    "sgd-cosine": dict(optimizer="sgd", lr=0.2, lr_batch=256, momentum=0.9, weight_decay=4e-5,
                       schedule="cosine", warmup_epochs=1.0, label_smoothing=0.1),
}
_FROM_RECIPE = ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs", "label_smoothing")

#: What ``--resume`` may change: how the run executes, not what it computes (``epochs`` extends it).
RESUMABLE_OPTIONS = ("epochs", "device", "workers", "progress", "amp", "compile", "save_every_steps", "eval_every")


def _opt(default: Any, help: str, task: str | None = None, off: Any = None) -> Any:
    """A field with its help text; ``task``: the one task the option applies to (the help says which),
    ``off``: its value that does nothing (what a resolved configuration of another task holds), so that
    another task rejects any other."""
    return field(default=default, metadata={"help": f"{task}: {help}" if task else help, "task": task, "off": off})


def _misplaced(c: TrainConfig, task: str) -> str | None:
    """What is wrong when flags of another task than ``task`` are set to act, or None."""
    wrong = {f"--{f.name.replace('_', '-')}": f.metadata["task"] for f in dataclasses.fields(c)
             if f.metadata.get("task") not in (None, task) and getattr(c, f.name) not in (None, f.metadata["off"])}
    if not wrong:
        return None
    owners = " or ".join(sorted(set(wrong.values())))
    return (f"this run trains a {task} model, and {', '.join(wrong)} only {'applies' if len(wrong) == 1 else 'apply'} "
            f"to {owners}: leave {'it' if len(wrong) == 1 else 'them'} out, or name a {owners} model")


@dataclass
class TrainConfig:
    """Every training option; ``None`` means "the data preset's / recipe's default"."""

    # what to train, on what
    task: str | None = _opt(None, "classification, detection or segmentation (default: what the model name says)")
    model: str | None = _opt(None, "model name (default: per task and data; digits: 0.5-MobileNetV2-32, "
                                   "0.5-SSDLite-MobileNetV2-96)")
    data: str | None = _opt(None, "ImageFolder (train/ + val/, or one folder split by --val-split), a CIFAR "
                                  "folder, tar shards, 'digits' or 'fake'")
    val_split: float = _opt(0.2, "held-out fraction when the data has no validation folder")
    seed: int = _opt(0, "seed of the split, the data order and the initialization")
    out: str | None = _opt(None, "run folder (default: runs/<time>-<model>)")
    # how long, how fast (defaults: the recipe's and the data preset's)
    recipe: str = _opt("sgd-cosine", "paper (RMSProp-TF, lr 0.045 per 96 images x0.98/epoch) or sgd-cosine")
    epochs: int | None = _opt(None, "number of epochs (with --resume: extend the run to this many)")
    batch_size: int | None = _opt(None, "images per step (per process under torchrun)")
    lr: float | None = _opt(None, "learning rate (default: the recipe's, scaled by batch size)")
    head_lr_mult: float | None = _opt(None, "with --init: learning-rate multiplier of the layers the init weights do "
                                            "not hold (a detector's extra layers, top-down sums and predictors; a "
                                            "segmenter's head; a classifier's classifier); default 1, or the "
                                            "fine-tuning recipe's")
    # optimizer
    optimizer: str | None = _opt(None, "rmsprop_tf, sgd or adamw (default: the recipe's)")
    momentum: float | None = _opt(None, "momentum")
    rms_decay: float = _opt(0.9, "RMSProp decay")
    opt_eps: float = _opt(1.0, "RMSProp-TF epsilon (TF-slim: 1.0)")
    # learning-rate schedule
    schedule: str | None = _opt(None, "exponential, cosine or constant")
    warmup_epochs: float | None = _opt(None, "linear warmup length")
    lr_decay: float = _opt(0.98, "exponential schedule factor")
    lr_decay_epochs: float = _opt(1.0, "epochs per exponential decay step")
    # regularization
    weight_decay: float | None = _opt(None, "L2 on conv/FC weights (not BN, biases, depthwise)")
    decay_depthwise: bool = _opt(False, "also decay depthwise filters")
    label_smoothing: float | None = _opt(None, "label smoothing (TF V2 recipe: 0.1)")
    ema_decay: float = _opt(0.0, "EMA of weights (TF V2 recipe: 0.9999; 0 = off)")
    dropout: float | None = _opt(None, "classifier dropout (default: the model's)")
    # input and augmentation
    input_size: int | None = _opt(None, "input resolution (default: the model name's)")
    min_scale: float | None = _opt(None, "RandomResizedCrop lower area bound")
    hflip: float | None = _opt(None, "horizontal flip probability")
    crop_pct: float | None = _opt(None, "evaluation center-crop fraction")
    ssd_augment: bool | None = _opt(None, "SSD's augmentations (photometric distortion, zoom-out, IoU "
                                          "crop; default: on for photos, off for the embedded canvases)",
                                    "detection", False)
    zoom_out: float | None = _opt(None, "largest zoom-out factor (SSD augmentation; 1 = off)",
                                  "detection", 1.0)
    fit_anchors: bool = _opt(False, "fit the smallest anchors to the training boxes (small objects)",
                             "detection", False)
    copy_paste: float | None = _opt(None, "probability that a training image gets 1-3 objects cut from "
                                          "the training images pasted in, each class equally often (rare "
                                          "classes; 0 = off; default: the fine-tuning recipe's, else 0)",
                                    "detection", 0.0)
    repeat_threshold: float = _opt(0.0, "repeat-factor sampling (LVIS): images of a class found in fewer than "
                                        "this fraction of the training images are seen sqrt(threshold / fraction) "
                                        "times per epoch (rare classes; 0 = off)")
    # execution
    workers: int | None = _opt(None, "data-loader worker processes (default: 0 in memory, up to 4 for files)")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: str | None = _opt(None, "auto (bf16 where the CPU/GPU computes it natively), off, bf16 or fp16; "
                                 "default: per data")
    channels_last: bool = _opt(True, "channels-last memory format")
    compile: bool = _opt(False, "torch.compile the model")
    # reproducibility and fine-tuning
    deterministic: bool = _opt(False, "deterministic algorithms (a resumed run repeats an uninterrupted one)")
    init: str | None = _opt(None, "fine-tune from these weights (classifier re-initialised if the class count "
                                  "differs; a detector takes a classifier's as its backbone)")
    freeze_backbone: bool = _opt(False, "train only the classifier (a detector: its extras and heads)")
    freeze_stages: int | None = _opt(None, "freeze the backbone's first N resolution stages (the stem's and the "
                                           "blocks' at strides 2, 4, 8, 16, 32: generic features, and the costliest "
                                           "backward passes; default 0, or the fine-tuning recipe's)")
    freeze_bn: bool | None = _opt(None, "keep the backbone's BatchNorm layers in inference mode (their statistics "
                                        "frozen: the init weights'; default: on when fine-tuning with --init)")
    zero_init_residual: bool | None = _opt(None, "start every residual block as the identity (its projection's BN "
                                                 "scale zeroed; default: on for the embedded digit canvases)")
    # robustness and scale
    max_bad_fraction: float = _opt(0.1, "stop if a larger share of the images is missing or unreadable")
    save_every_steps: int = _opt(0, "also checkpoint every N steps (long epochs)")
    eval_every: int | None = _opt(None, "evaluate on the held-out split every N epochs and after the last (the best "
                                        "epoch is chosen among these; default 1, or the fine-tuning recipe's)")
    sync_bn: bool = _opt(False, "SyncBatchNorm under torchrun")
    progress: bool = _opt(True, "progress bars")

    def resolved(self) -> ResolvedConfig:
        """Every ``None`` filled from the data preset and the recipe, and every value validated."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        laid_out = None if self.task else data_task(self.data)  # what the data's layout is for
        if laid_out and self.model and task_of(self.model) != laid_out:
            raise ValueError(f"{self.data} is a {laid_out} dataset and {self.model} is not a {laid_out} model; name "
                             f"one (e.g. {_EXAMPLE_MODEL[laid_out]}), or pass --task {task_of(self.model)}")
        task = self.task or laid_out or (task_of(self.model) if self.model else "classification")
        if task not in TASK_PRESETS:
            raise ValueError(f"invalid task {task!r}; valid: {', '.join(TASK_PRESETS)}")
        if self.model and task_of(self.model) != task:
            raise ValueError(f"{self.model} is not a {task} model; detectors are named like "
                             "0.5-SSDLite-MobileNetV2-96, segmenters like 0.5-DeepLabV3-MobileNetV2-96")
        misplaced = _misplaced(self, task)
        if misplaced:
            raise ValueError(misplaced)
        spec = resolve_data(self.data, self.val_split, self.seed, task)
        recipe = {k: v for k, v in RECIPES[self.recipe].items() if k in _FROM_RECIPE}
        preset = TASK_PRESETS[task].get(spec.kind)
        if preset is None:
            raise ValueError(f"{spec.kind!r} data is for classification, not {task}")
        tuned = FINETUNE_PRESETS[task] if self.init else {}
        filled = {**recipe, **preset, **tuned, "task": task}  # a preset's value (digits: weight decay) wins
        values = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        c = ResolvedConfig(**{**filled, **values})
        splits = functools.cache(lambda: load_task_splits(spec))  # read once, if at all
        own = False
        if self.init and not self.model:
            c.model, own = init_model(self.init, c.model)
        if not self.model and not own:
            c.model, c.model_note = data_model(c.model, c.input_size, splits)
        if self.lr is None and "lr" not in preset and "lr" not in tuned:
            c.lr = RECIPES[self.recipe]["lr"] * c.batch_size / RECIPES[self.recipe]["lr_batch"]
        if self.epochs is None and self.init and task in FINETUNE_IMAGES:
            c.epochs = finetune_epochs(FINETUNE_IMAGES[task], len(splits().train))
        if c.copy_paste and spec.root is None:  # the embedded canvases: drawn in memory, fresh every epoch
            if self.copy_paste:
                raise ValueError("copy-paste cuts objects out of image files; the embedded data has none")
            c.copy_paste = 0.0  # the fine-tuning recipe's
        if self.eval_every is None and self.init and task in FINETUNE_IMAGES:
            c.eval_every = max(1, math.ceil(c.epochs / FINETUNE_EVALS))
        if self.workers is None:
            c.workers = default_workers(spec)
        _validate(c)
        return c

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = {k.replace("-", "_"): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**d)


@dataclass
class ResolvedConfig(TrainConfig):
    """A configuration with every default decided: the types are concrete (``dropout``,
    ``input_size``, ``out`` and ``init`` may still be None: the model's own / no file)."""

    task: str = ""
    model: str = ""
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    head_lr_mult: float = 1.0
    optimizer: str = ""
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = ""
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    min_scale: float = 0.0
    hflip: float = 0.0
    crop_pct: float = 0.0
    ssd_augment: bool = False
    zoom_out: float = 1.0
    copy_paste: float = 0.0
    zero_init_residual: bool = False
    freeze_bn: bool = False
    freeze_stages: int = 0
    workers: int = 0
    amp: str = ""
    eval_every: int = 1
    #: why the data chose ``model`` when none was named (:func:`data_model`): said when the run starts,
    #: not saved (the saved ``model`` names it)
    model_note: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["model_note"]
        return d


def _validate(c: ResolvedConfig) -> None:
    def positive(name: str, v: float | int, integer: bool = False) -> None:
        if (integer and not isinstance(v, int)) or not v > 0 or not math.isfinite(v):
            raise ValueError(f"invalid {name} {v!r}; it must be a positive {'integer' if integer else 'number'}")

    positive("epochs", c.epochs, True)
    positive("batch size", c.batch_size, True)
    positive("learning rate", c.lr)
    positive("head_lr_mult", c.head_lr_mult)
    positive("eval_every", c.eval_every, True)
    if c.input_size is not None:
        check_input_size(c.input_size)
    if c.amp not in AMP_CHOICES:
        raise ValueError(f"invalid amp {c.amp!r}; valid: {', '.join(AMP_CHOICES)}")
    if not 0 <= c.weight_decay < 1:
        raise ValueError(f"invalid weight decay {c.weight_decay!r}")
    if not 0 <= c.label_smoothing < 1:
        raise ValueError(f"invalid label smoothing {c.label_smoothing!r}; it must be in [0, 1)")
    if not 0 <= c.ema_decay < 1:
        raise ValueError(f"invalid EMA decay {c.ema_decay!r}; it must be in [0, 1) (0 = off)")
    if not 0 <= c.freeze_stages <= 5:
        raise ValueError(f"invalid freeze_stages {c.freeze_stages!r}; it must be 0..5 (the backbone's stages)")
    if c.workers < 0:
        raise ValueError(f"invalid workers {c.workers!r}; it must be >= 0")
    if not 0 <= c.max_bad_fraction <= 1:
        raise ValueError(f"invalid max_bad_fraction {c.max_bad_fraction!r}")
    if not 0 <= c.copy_paste <= 1:
        raise ValueError(f"invalid copy_paste {c.copy_paste!r}; it must be a probability in [0, 1] (0 = off)")
    if not 0 <= c.repeat_threshold <= 1:
        raise ValueError(f"invalid repeat_threshold {c.repeat_threshold!r}; it must be in [0, 1] (0 = off)")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Training options from a TOML or YAML file (keys are the option names)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text) or {}
    except Exception as e:
        raise ValueError(f"{p}: cannot parse config ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a config file must be a mapping of option names to values")
    TrainConfig.from_dict(data)  # validate the keys now
    return data
