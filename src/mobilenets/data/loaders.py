"""From datasets to batches: transforms applied per sample, unreadable images carried as errors
instead of crashing a worker, a seeded resumable sampler sharded over ranks, and the DataLoader."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, Subset

from .datasets import DataSpec
from .images import UnreadableImage
from .shards import ShardStream


class Transformed(Dataset):
    """Applies a transform; an unreadable sample becomes its :class:`UnreadableImage` (see :func:`collate`)."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | UnreadableImage:
        try:
            img, y = self.base[i]
        except UnreadableImage as e:
            return e
        return self.transform(img), int(y)


Batch = tuple[torch.Tensor, torch.Tensor, list[str]]


def with_transform(ds: Dataset, transform: Callable[[Any], torch.Tensor]) -> Dataset:
    """Map-style datasets get wrapped; a shard stream applies the transform as it streams."""
    if isinstance(ds, ShardStream):
        ds.transform = transform
        return ds
    return Transformed(ds, transform)


def collate(batch: list[tuple[torch.Tensor, int] | UnreadableImage]) -> Batch:
    """Stack the readable samples; also return "path: reason" for each unreadable one."""
    good = [b for b in batch if not isinstance(b, UnreadableImage)]
    bad = [str(b) for b in batch if isinstance(b, UnreadableImage)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), bad


class EpochSampler(Sampler[int]):
    """Seeded order per (seed, epoch), sharded by rank, resumable from a position in the epoch.

    The order depends only on (seed, epoch), so a resumed run sees the same batches as an
    uninterrupted one; ``skip`` drops the samples of this rank already consumed. ``repeat_factors``
    (:func:`~mobilenets.data.annotations.repeat_factors`) lists image ``i`` ``floor(r_i)`` times,
    plus once more with probability ``frac(r_i)``, drawn once from the seed: every epoch has the
    same length, which the learning-rate schedule counts on.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 pad: bool = True, repeat_factors: Sequence[float] | None = None) -> None:
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world_size
        self.pad = pad  # training pads so every rank takes the same number of steps; evaluation does not
        self.epoch, self.skip = 0, 0
        self.items = torch.arange(n)
        if repeat_factors is not None:
            if len(repeat_factors) != n:
                raise ValueError(f"{len(repeat_factors)} repeat factors for {n} samples")
            r = torch.tensor(list(repeat_factors), dtype=torch.float64)
            extra = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < r.frac()
            self.items = torch.repeat_interleave(self.items, r.floor().long() + extra.long())
        self.n = len(self.items)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = self.items[torch.randperm(self.n, generator=g)].tolist()
        else:
            order = self.items.tolist()
        if self.pad and self.n:
            order += order[: math.ceil(self.n / self.world) * self.world - self.n]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        per_rank = math.ceil(self.n / self.world) if self.pad else len(range(self.rank, self.n, self.world))
        return max(per_rank - self.skip, 0)


def default_workers(spec: DataSpec) -> int:
    """In-memory data needs no worker processes; decoding files does (kept small: 2-core machines)."""
    if spec.kind in ("digits", "fake", "cifar10", "cifar100"):
        return 0
    if spec.kind == "shards":
        return min(2, os.cpu_count() or 1)
    return min(4, os.cpu_count() or 1)


def make_loader(
    ds: Dataset,
    batch_size: int,
    *,
    sampler: Sampler[int] | None = None,
    workers: int = 0,
    device: torch.device | None = None,
    drop_last: bool = False,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] = collate,
) -> DataLoader:
    # A loader-owned generator: creating an iterator draws a base seed from it, not from the global
    # RNG (which the augmentations use), so a run resumed mid-epoch replays the same random stream.
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=workers > 0 and not isinstance(ds, IterableDataset),
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
    )


class TransformedPairs(Dataset):
    """Applies a transform of ``(image, target)`` (boxes or masks); an unreadable image becomes its
    :class:`UnreadableImage`."""

    def __init__(self, base: Dataset, transform: Any) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to a dataset that draws new samples every epoch."""
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | UnreadableImage:
        try:
            img, target = self.base[i]
        except UnreadableImage as e:
            return e
        return self.transform(img, target)


def collate_targets(batch: list[Any]) -> tuple[torch.Tensor, list[dict[str, Any]], list[str]]:
    """Stack the readable images; targets stay a list (each image has its own boxes, or mask size)."""
    good = [b for b in batch if not isinstance(b, UnreadableImage)]
    bad = [str(b) for b in batch if isinstance(b, UnreadableImage)]
    if not good:
        return torch.empty(0), [], bad
    return torch.stack([g[0] for g in good]), [g[1] for g in good], bad


def image_paths(ds: Dataset) -> list[Path]:
    """The image files of a dataset read from disk (an ImageFolder, its split, annotated images, image +
    mask pairs); empty for data held in memory (the embedded digits, CIFAR, synthetic)."""
    if isinstance(ds, Subset):
        inner = image_paths(ds.dataset)
        return [inner[i] for i in ds.indices] if inner else []
    for attr in ("samples", "pairs"):
        items = getattr(ds, attr, None)
        if isinstance(items, list) and items and isinstance(items[0][0], (str, Path)):
            return [Path(item[0]) for item in items]
    return []
