"""Writing weights in other formats: our safetensors, torchvision/timm state dicts, Keras."""

from __future__ import annotations

from pathlib import Path

import torch

from ..utils.fsutil import atomic_write
from .keras import export_keras
from .loader import load_model
from .native import save_weights
from .zoo_keys import convert_state_dict


def convert_weights(src: str | Path, dst: str | Path, model: str | None = None, *, drop_background: bool = False,
                    target: str = "mobilenets") -> Path:
    """Convert any supported weights to ``dst``: our safetensors (default), or ``target`` torchvision/timm
    (a ``.pth`` state dict) or keras (a ``.weights.h5``)."""
    net = load_model(src, model, drop_background=drop_background)
    dst = Path(dst)
    if target == "mobilenets":
        meta = net.weights_meta
        return save_weights(net, dst, classes=meta.get("classes"), preprocessing=meta.get("preprocessing"),
                            dataset=meta.get("dataset"), metrics=meta.get("metrics"), source=meta.get("source"),
                            published=meta.get("published"))
    if target in ("torchvision", "timm"):
        sd = convert_state_dict(net.state_dict(), "mobilenets", net, target=target)
        atomic_write(dst, lambda p: torch.save(sd, p))
        return dst
    if target == "keras":
        return export_keras(net, dst)
    raise ValueError(f"unknown target format {target!r}; valid: mobilenets, torchvision, timm, keras")
