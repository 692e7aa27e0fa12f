"""MobileNet V1 and V2 for PyTorch, built from the papers' tables.

The package is layered (README "Architecture"); this module is its public face. Models, names
and the cost model import eagerly; training, evaluation, prediction, weight I/O and deployment
import on first use (they pull in scikit-learn, matplotlib, safetensors, ONNX).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from . import tasks
from .analysis import Profile, profile
from .models import MobileNet, ModelConfig, build_arch, list_models, memory_efficient, parse_name

__version__ = "0.1.0"

# name -> the subpackage it comes from, imported on first use
_LAZY = {name: package for package, names in {
    "training": ("train", "TrainConfig", "evaluate"),
    "deploy": ("predict", "export"),
    "weights": ("save_weights", "load_model", "read_metadata", "convert_state_dict"),
    "tradeoffs": ("bench", "choose", "sweep"),
}.items() for name in names}

__all__ = ["MobileNet", "ModelConfig", "Profile", "bench", "build_arch", "choose", "convert_state_dict",  # noqa: RUF022
           "create_model", "evaluate", "export", "list_models", "load_model", "memory_efficient", "parse_name",
           "predict", "profile", "read_metadata", "save_weights", "sweep", "train", "TrainConfig"]
assert set(_LAZY) <= set(__all__)


def create_model(name: str | ModelConfig, *, weights: str | Path | None = None, **options: Any) -> torch.nn.Module:
    """Build a MobileNet by name, e.g. ``create_model("0.75-MobileNet-128", num_classes=10)``, or a
    detector, e.g. ``create_model("1.0-SSDLite-MobileNetV2-320", num_classes=20)``.

    Options: any :class:`ModelConfig` field (``num_classes``, ``dropout``, ``in_chans``,
    ``activation``, ``bn_eps``, ``bn_momentum``, ``padding``, ``variant``, ``expansion``, ``alpha``,
    ``resolution``) plus ``features_only`` and ``out_indices``. ``weights=`` (a file or a
    published-weights id) loads weights, timm-style.
    """
    if weights is None:
        return tasks.kind_of(name).create(name, **options)
    if {"features_only", "out_indices"} & set(options):
        raise ValueError("features_only/out_indices cannot be combined with weights= yet; load, then slice")
    from .weights import load_model

    return load_model(weights, model=name, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mobilenets' has no attribute {name!r}")
