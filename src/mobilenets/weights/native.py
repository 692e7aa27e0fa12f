"""Our own weights format: safetensors with a JSON metadata record that makes the file self-describing.

The metadata (key ``mobilenets`` in the safetensors header) holds the model config, class names,
preprocessing, the dataset it was trained/evaluated on and its metrics, so that
:func:`load_model` needs nothing but the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..tasks import config_of, config_to_dict, default_preprocess, task_of
from ..utils.fsutil import atomic_write

META_KEY = "mobilenets"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file that cannot be used: unreadable, malformed, or not matching the model."""


def save_weights(
    model: nn.Module,
    path: str | Path,
    *,
    classes: list[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model``'s weights and metadata to a ``.safetensors`` file, atomically."""
    cfg = config_of(model)
    if classes is not None and len(classes) != cfg.num_classes:
        raise ValueError(f"{len(classes)} class names for a model with {cfg.num_classes} outputs")
    meta = {
        "format_version": FORMAT_VERSION,
        "model": cfg.name,
        "task": task_of(cfg),
        "config": config_to_dict(cfg),
        "classes": classes,
        "preprocessing": preprocessing or default_preprocess(cfg).to_dict(),
        "dataset": dataset,
        "metrics": metrics,
        **extra,
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {META_KEY: json.dumps(meta), "format": "pt"}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata record of one of our safetensors files (without reading the tensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    if META_KEY not in header:
        return {}
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: malformed mobilenets metadata ({e})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: malformed mobilenets metadata")
    return meta


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; a truncated or malformed file gives a WeightsError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open is not iterable)
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that lists the offending tensors (missing, unexpected, wrong shape)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
    if shapes:
        problems.append(f"{len(shapes)} with another shape ({'; '.join(shapes[:4])})")
    if problems:
        raise WeightsError(f"{source} does not fit {getattr(getattr(model, 'config', None), 'name', 'the model')}: "
                           + "; ".join(problems))
    model.load_state_dict(state, strict=False)
