"""Data: decoding images (``images``), datasets and seeded splits (``datasets``), training
augmentation (``transforms``, ``copy_paste``), batching (``loaders``) and tar shards (``shards``, ``shard_writer``).
New tasks add their datasets here (samples with their boxes or masks)."""

from .annotations import repeat_factors
from .copy_paste import CopyPaste
from .datasets import (
    DATA_KINDS,
    DataSpec,
    Splits,
    data_task,
    load_splits,
    load_task_splits,
    resolve_data,
)
from .images import IMAGE_EXTENSIONS, UnreadableImage, find_images, load_image
from .loaders import EpochSampler, Transformed, collate, default_workers, make_loader, with_transform
from .transforms import train_transform

__all__ = ["DATA_KINDS", "IMAGE_EXTENSIONS", "CopyPaste", "DataSpec", "EpochSampler", "Splits", "Transformed",
           "UnreadableImage", "collate", "data_task", "default_workers", "find_images", "load_image",
           "load_splits", "load_task_splits", "make_loader", "repeat_factors", "resolve_data",
           "train_transform", "with_transform"]
