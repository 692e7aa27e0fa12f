"""Datasets (embedded digits, ImageFolder, CIFAR, synthetic), seeded splits and transform presets."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, Subset
from torchvision.transforms import InterpolationMode, v2

from .images import IMAGE_EXTENSIONS, UnreadableImage, load_image
from .spec import ModelConfig, check_input_size

DATA_KINDS = ("digits", "folder", "cifar10", "cifar100", "fake", "shards")
VAL_FOLDER_NAMES = ("val", "validation", "valid", "test")
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


# ------------------------------------------------------------------------------ preprocessing


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing that travels with the weights.

    ``resize="shorter"``: resize the shorter side to ``input_size / crop_pct`` then center-crop
    (timm/torchvision); ``resize="squash"``: resize the whole image to ``input_size`` square,
    ignoring the aspect ratio (what Google's TFLite classifiers do).
    """

    input_size: int
    crop_pct: float = 0.875
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    resize: str = "shorter"

    def __post_init__(self) -> None:
        check_input_size(self.input_size)
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"invalid crop_pct {self.crop_pct}; it must be in (0, 1]")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"invalid interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        if self.resize not in ("shorter", "squash"):
            raise ValueError(f"invalid resize mode {self.resize!r}; valid: shorter, squash")

    @classmethod
    def for_config(cls, cfg: ModelConfig, input_size: int | None = None, crop_pct: float = 0.875) -> "Preprocess":
        return cls(input_size or cfg.resolution, crop_pct, tuple(cfg.mean), tuple(cfg.std))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> "Preprocess":
        return dataclasses.replace(self, **changes)

    def _finish(self) -> list[v2.Transform]:
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]

    def eval_transform(self) -> v2.Compose:
        interp = INTERPOLATIONS[self.interpolation]
        if self.resize == "squash":
            resize: list[v2.Transform] = [v2.Resize((self.input_size, self.input_size), interp, antialias=True)]
        else:
            scaled = math.floor(self.input_size / self.crop_pct)
            resize = [v2.Resize(scaled, interp, antialias=True), v2.CenterCrop(self.input_size)]
        return v2.Compose([v2.ToImage(), *resize, *self._finish()])

    def train_transform(self, min_scale: float = 0.35, hflip: float = 0.5) -> v2.Compose:
        """RandomResizedCrop with a configurable lower scale bound (the V1 paper limits small crops)."""
        if not 0 < min_scale <= 1:
            raise ValueError(f"invalid min_scale {min_scale}; it must be in (0, 1]")
        ops: list[v2.Transform] = [
            v2.ToImage(),
            v2.RandomResizedCrop(self.input_size, scale=(min_scale, 1.0),
                                 interpolation=INTERPOLATIONS[self.interpolation], antialias=True),
        ]
        if hflip > 0:
            ops.append(v2.RandomHorizontalFlip(hflip))
        return v2.Compose(ops + self._finish())


# ------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split; recorded in the weights' metadata."""

    kind: str = "digits"
    root: str | None = None
    val_split: float = 0.2  # used when there is no separate validation set
    seed: int = 0
    fake_size: int = 256
    fake_classes: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_data(data: str | os.PathLike[str] | None, val_split: float = 0.2, seed: int = 0) -> DataSpec:
    """``None``/"digits" -> embedded digits; "fake" -> synthetic; else a folder (ImageFolder or CIFAR)."""
    if not 0 < val_split < 1:
        raise ValueError(f"invalid val_split {val_split}; it must be in (0, 1)")
    if data is None or str(data) == "digits":
        return DataSpec("digits", None, val_split, seed)
    if str(data) == "fake":
        return DataSpec("fake", None, val_split, seed)
    root = Path(data).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root} (use an ImageFolder layout, a CIFAR folder, "
                                "'digits' or 'fake')")
    if not root.is_dir():
        raise ValueError(f"--data must be a folder, got the file {root}")
    from .shards import is_shard_folder

    if is_shard_folder(root):
        return DataSpec("shards", str(root.resolve()), val_split, seed)
    for kind, sub in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        if root.name == sub:
            return DataSpec(kind, str(root.parent.resolve()), val_split, seed)
        if (root / sub).is_dir():
            return DataSpec(kind, str(root.resolve()), val_split, seed)
    return DataSpec("folder", str(root.resolve()), val_split, seed)


class _Folder(Dataset):
    """ImageFolder-style listing with a fixed class list; images decode lazily via load_image."""

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        from torchvision.datasets.folder import make_dataset

        self.root = root
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = make_dataset(str(root), self.class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=True)
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, target = self.samples[i]
        return load_image(path), target


def _class_dirs(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


class _Digits(Dataset):
    """scikit-learn's 1,797 real 8x8 handwritten digits as uint8 RGB images (values 0..16 -> 0..255)."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        img = torch.from_numpy(d.images).float().mul(255.0 / 16.0).round().to(torch.uint8)
        self.images = img.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        self.targets = [int(t) for t in d.target]
        self.classes = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.targets[i]


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]


def _split(ds: Dataset, targets: Sequence[int], spec: DataSpec) -> tuple[Subset, Subset]:
    """Seeded, stratified split (the same indices every time for the same seed)."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(targets)))
    counts = torch.bincount(torch.tensor(list(targets))) if targets else torch.zeros(0)
    stratify = targets if len(counts) and int(counts[counts > 0].min()) >= 2 else None
    tr, va = train_test_split(idx, test_size=spec.val_split, random_state=spec.seed, stratify=stratify)
    return Subset(ds, sorted(tr)), Subset(ds, sorted(va))


def load_splits(spec: DataSpec) -> Splits:
    """The train and validation datasets of ``spec``, yielding (image, label) before transforms."""
    if spec.kind == "digits":
        ds = _Digits()
        tr, va = _split(ds, ds.targets, spec)
        return Splits(tr, va, ds.classes)
    if spec.kind == "fake":
        from torchvision.datasets import FakeData

        train = FakeData(spec.fake_size, (3, 48, 48), spec.fake_classes, random_offset=spec.seed)
        val = FakeData(max(spec.fake_size // 4, 8), (3, 48, 48), spec.fake_classes, random_offset=spec.seed + 10**6)
        return Splits(train, val, [f"class_{i}" for i in range(spec.fake_classes)])
    if spec.kind in ("cifar10", "cifar100"):
        from torchvision import datasets

        cls = datasets.CIFAR10 if spec.kind == "cifar10" else datasets.CIFAR100
        try:
            train = cls(spec.root, train=True, download=False)
            val = cls(spec.root, train=False, download=False)
        except RuntimeError as e:
            raise ValueError(f"{spec.root}: CIFAR files missing or corrupt ({e})") from None
        return Splits(train, val, list(train.classes))
    if spec.kind == "shards":
        import json

        from .shards import INDEX, ShardStream

        root = Path(spec.root or ".")
        classes = json.loads((root / INDEX).read_text())["classes"]
        return Splits(ShardStream(root, "train", True, spec.seed, cycle=True), ShardStream(root, "val", False), classes)
    if spec.kind != "folder":
        raise ValueError(f"unknown data kind {spec.kind!r}; valid: {', '.join(DATA_KINDS)}")
    root = Path(spec.root or ".")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    val_dir = next((root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        classes = _class_dirs(root / "train")
        if not classes:
            raise ValueError(f"{root / 'train'}: no class folders found; expected train/<class>/<image>")
        extra = sorted(set(_class_dirs(val_dir)) - set(classes))
        if extra:
            raise ValueError(f"{val_dir} has classes that {root / 'train'} lacks: {extra}")
        train, val = _Folder(root / "train", classes), _Folder(val_dir, classes)
    else:
        base = root / "train" if (root / "train").is_dir() else root
        classes = _class_dirs(base)
        if not classes:
            raise ValueError(f"{root}: no class folders found; expected {root}/<class>/<image> or train/ and val/")
        full = _Folder(base, classes)
        train, val = _split(full, full.targets, spec) if len(full) else (full, full)
    if len(train) == 0:
        raise ValueError(f"{root}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return Splits(train, val, classes)


class Transformed(Dataset):
    """Applies a transform; an unreadable sample becomes its :class:`UnreadableImage` (see :func:`collate`)."""

    def __init__(self, base: Dataset, transform: v2.Transform) -> None:
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


def with_transform(ds: Dataset, transform: v2.Transform) -> Dataset:
    """Map-style datasets get wrapped; a shard stream applies the transform as it streams."""
    from .shards import ShardStream

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
    uninterrupted one; ``skip`` drops the samples of this rank already consumed.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world_size
        self.pad = pad  # training pads so every rank takes the same number of steps; evaluation does not
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
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
        collate_fn=collate,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=workers > 0 and not isinstance(ds, IterableDataset),
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
    )
