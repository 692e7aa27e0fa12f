"""MobileNet V1 and V2 for PyTorch, built from the papers' tables.

The model, registry and cost model import eagerly; training, evaluation, prediction and weight
I/O import on first use (they pull in scikit-learn, matplotlib, safetensors).
"""

from __future__ import annotations

import importlib
from typing import Any

from .cost import Profile, profile
from .model import MobileNet
from .registry import create_model, list_models, parse_name
from .spec import ModelConfig, build_arch

__version__ = "0.1.0"

_LAZY = {
    "train": ("training", "train"),
    "TrainConfig": ("training", "TrainConfig"),
    "evaluate": ("evaluation", "evaluate"),
    "predict": ("prediction", "predict"),
    "save_weights": ("weights", "save_weights"),
    "load_model": ("weights", "load_model"),
    "read_metadata": ("weights", "read_metadata"),
    "convert_state_dict": ("convert", "convert_state_dict"),
    "choose": ("choose", "choose"),
    "sweep": ("choose", "sweep"),
}

__all__ = ["MobileNet", "ModelConfig", "Profile", "build_arch", "create_model", "list_models", "parse_name",
           "profile", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'mobilenets' has no attribute {name!r}")
