"""Packing an image folder into WebDataset tar shards, for data too large for one folder listing.

``mobilenets shard IMAGEFOLDER OUT --shard-size N`` writes ``OUT/train-000000.tar ...`` and
``OUT/val-...tar`` (the image bytes as they are, plus the class index) and ``OUT/shards.json``
(classes and sample counts); :mod:`mobilenets.data.shards` streams them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from .datasets import load_splits, resolve_data
from .shards import INDEX


def write_shards(data: str | Path, out: str | Path, shard_size: int = 1000, val_split: float = 0.2,
                 seed: int = 0) -> dict[str, Any]:
    """Shard an ImageFolder (train/ + val/, or one folder split by ``val_split``) into tar files."""
    import webdataset as wds

    if shard_size < 1:
        raise ValueError(f"invalid shard size {shard_size}; it must be >= 1")
    spec = resolve_data(data, val_split, seed)
    if spec.kind != "folder":
        raise ValueError(f"{data}: sharding needs an image folder (train/ and val/, or class folders)")
    splits = load_splits(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, ds in (("train", splits.train), ("val", splits.val)):
        samples = _samples(ds)
        with wds.ShardWriter(str(out / f"{name}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for i, (path, label) in enumerate(samples):
                ext = Path(path).suffix.lower().lstrip(".") or "img"
                sink.write({"__key__": f"{name}{i:09d}", ext: Path(path).read_bytes(), "cls": str(label).encode()})
        counts[name] = len(samples)
    index = {"classes": splits.classes, "counts": counts,
             **{split: sorted(p.name for p in out.glob(f"{split}-*.tar")) for split in ("train", "val")},
             "source": str(Path(data).resolve())}
    (out / INDEX).write_text(json.dumps(index, indent=1))
    return index


def _samples(ds: Any) -> list[tuple[str, int]]:
    if isinstance(ds, Subset):
        inner = _samples(ds.dataset)
        return [inner[i] for i in ds.indices]
    return list(ds.samples)
