"""Fine-tuning: start from any weights file we read (``--init``), optionally with a frozen backbone.

A detector starts from a classifier's weights like the papers' detectors start from ImageNet: the
classifier's tensors become the detector's ``backbone.*`` (its classifier layer has no counterpart).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..tasks.detection.model import SSD
from ..weights import load_foreign_state


def init_from_weights(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Load every tensor of ``path`` whose name and shape match; return (loaded, re-initialised names)."""
    detector = isinstance(model, SSD)
    state = load_foreign_state(path, model.config.backbone if detector else model.config)
    if detector and not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}  # a classifier's weights
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    if not any(k.endswith(".weight") for k in loaded):
        raise ValueError(f"{path}: no tensor matches {model.config.name} (is it the same architecture?)")
    model.load_state_dict(loaded, strict=False)
    return len(loaded), skipped


def freeze_backbone(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith("backbone.") if isinstance(model, SSD) else name.startswith("classifier.")


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:  # frozen layers keep their BN statistics
        for m in ((model.backbone,) if isinstance(model, SSD) else (model.stem, model.blocks, model.head)):
            m.eval()
