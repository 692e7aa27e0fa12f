"""Loading and saving weights: our self-describing safetensors, and foreign formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import MobileNet
from ..spec import ModelConfig
from .native import (
    WeightsError,
    config_from_dict,
    load_state_dict_checked,
    read_metadata,
    read_tensors,
    save_weights,
)

__all__ = ["WeightsError", "load_model", "read_metadata", "save_weights"]


def load_model(weights: str | Path, model: str | ModelConfig | None = None, **overrides: Any) -> MobileNet:
    """Build a model from a weights file and load it; the file's metadata supplies the config.

    ``model`` (a name) is only needed when the file does not say which architecture it holds.
    The returned model carries the file's metadata as ``model.weights_meta`` (classes,
    preprocessing, dataset, metrics).
    """
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; pass a weights file (e.g. {path}/best.safetensors)")
    meta = read_metadata(path)
    if meta.get("config"):
        cfg = config_from_dict(meta["config"])
        if model is not None:
            from ..registry import resolve_config

            named = resolve_config(model)
            if (named.family, named.alpha, named.variant) != (cfg.family, cfg.alpha, cfg.variant):
                raise WeightsError(f"{path} holds {cfg.name}, not {named.name}")
    elif model is not None:
        from ..registry import resolve_config

        cfg = resolve_config(model)
    else:
        raise WeightsError(f"{path} has no mobilenets metadata; say which model it is (model=/--model)")
    if overrides:
        cfg = cfg.replace(**overrides)
    net = MobileNet(cfg)
    load_state_dict_checked(net, read_tensors(path), str(path))
    net.weights_meta = meta
    return net.eval()


def load_foreign_state(path: str | Path, model: MobileNet) -> dict:
    """A state dict in our key names from any supported weights file (for fine-tuning ``--init``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return read_tensors(path)
