"""ImageNet class names, so that published weights predict names, not indices.

The 1000 names come with torchvision (its weights' ``meta["categories"]``); Google's checkpoints
add "background" at index 0 (1001 classes).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def classes_for(num_classes: int) -> list[str] | None:
    """ImageNet names for a 1000- or 1001-class classifier; None for anything else."""
    if num_classes == 1000:
        return list(imagenet_classes())
    if num_classes == 1001:
        return ["background", *imagenet_classes()]
    return None
