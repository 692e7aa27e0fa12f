"""Fine-tuning: start from any weights file we read (``--init``), optionally with a frozen backbone."""

from __future__ import annotations

from pathlib import Path

from ..models import MobileNet
from ..weights import load_foreign_state


def init_from_weights(model: MobileNet, path: str | Path) -> tuple[int, list[str]]:
    """Load every tensor of ``path`` whose name and shape match; return (loaded, re-initialised names)."""
    state = load_foreign_state(path, model)
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    if not any(k.endswith(".weight") for k in loaded):
        raise ValueError(f"{path}: no tensor matches {model.config.name} (is it the same architecture?)")
    model.load_state_dict(loaded, strict=False)
    return len(loaded), skipped


def freeze_backbone(model: MobileNet) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")


def set_train_mode(model: MobileNet, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:  # frozen layers keep their BN statistics
        for m in (model.stem, model.blocks, model.head):
            m.eval()
