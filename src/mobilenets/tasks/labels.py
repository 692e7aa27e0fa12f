"""Class names of the datasets Google's weights were trained on, so that published weights
predict names, not indices.

ImageNet's 1000 names come with torchvision (its weights' ``meta["categories"]``); Google's
classifiers add "background" at index 0 (1001 classes). COCO's detectors have 90 class ids (the TF
label map, with gaps that torchvision names "N/A"); a detector's class ``k`` is ``classes[k - 1]``.
PASCAL VOC's segmenters have 21 classes, "background" first.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


@lru_cache(maxsize=1)
def coco_classes() -> tuple[str, ...]:
    """The 90 COCO category ids 1..90 in order ("N/A" for the ten unused ids)."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    return tuple(SSD300_VGG16_Weights.COCO_V1.meta["categories"][1:])


@lru_cache(maxsize=1)
def voc_segmentation_classes() -> tuple[str, ...]:
    """Background and the 20 PASCAL VOC classes, in VOC's order."""
    from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights

    names = DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"]
    return ("background", *names[1:])


def classes_for(num_classes: int, task: str = "classification") -> list[str] | None:
    """ImageNet names for a 1000- or 1001-class classifier, COCO names for a 90-class detector, VOC
    names for a 21-class segmenter; None for anything else."""
    if task == "detection":
        return list(coco_classes()) if num_classes == 90 else None
    if task == "segmentation":
        return list(voc_segmentation_classes()) if num_classes == 21 else None
    if num_classes == 1000:
        return list(imagenet_classes())
    if num_classes == 1001:
        return ["background", *imagenet_classes()]
    return None
