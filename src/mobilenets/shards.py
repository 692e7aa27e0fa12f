"""WebDataset tar shards for data too large for one folder listing (ImageNet-size).

``mobilenets shard IMAGEFOLDER OUT --shard-size N`` writes ``OUT/train-000000.tar ...`` and
``OUT/val-...tar`` (the image bytes as they are, plus the class index) and ``OUT/shards.json``
(classes and sample counts). ``--data OUT`` then streams the shards: each process of a
``torchrun`` job and each loader worker reads its own shards (``webdataset`` splits them).
Resuming a sharded run restarts the interrupted epoch from its beginning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset

INDEX = "shards.json"


def write_shards(data: str | Path, out: str | Path, shard_size: int = 1000, val_split: float = 0.2,
                 seed: int = 0) -> dict[str, Any]:
    """Shard an ImageFolder (train/ + val/, or one folder split by ``val_split``) into tar files."""
    import webdataset as wds

    from .data import load_splits, resolve_data

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
             "train": sorted(p.name for p in out.glob("train-*.tar")), "val": sorted(p.name for p in out.glob("val-*.tar")),
             "source": str(Path(data).resolve())}
    (out / INDEX).write_text(json.dumps(index, indent=1))
    return index


def _samples(ds: Any) -> list[tuple[str, int]]:
    from torch.utils.data import Subset

    if isinstance(ds, Subset):
        inner = _samples(ds.dataset)
        return [inner[i] for i in ds.indices]
    return list(ds.samples)


def is_shard_folder(path: Path) -> bool:
    return (path / INDEX).is_file()


class ShardStream(IterableDataset):
    """(image, label) samples streamed from tar shards, split over ranks and loader workers.

    A training stream (``cycle=True``) repeats its shards, so that every rank can take the same
    number of steps per epoch however the shards divide; the loop takes exactly that many.
    """

    def __init__(self, root: Path, split: str, shuffle: bool, seed: int = 0, cycle: bool = False) -> None:
        index = json.loads((root / INDEX).read_text())
        self.urls = [str(root / n) for n in index[split]]
        self.count = int(index["counts"][split])
        self.shuffle, self.seed, self.epoch, self.cycle = shuffle, seed, 0, cycle
        self.transform: Any = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self):  # type: ignore[no-untyped-def]
        import webdataset as wds

        from .images import UnreadableImage, load_image

        pipeline = wds.WebDataset(self.urls, shardshuffle=len(self.urls) if self.shuffle else False,
                                  nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                  seed=self.seed * 1000 + self.epoch, empty_check=False)
        if self.shuffle:
            pipeline = pipeline.shuffle(1000, seed=self.seed * 1000 + self.epoch)
        import io

        while True:
            for sample in pipeline:
                label = int(sample["cls"])
                key = next(k for k in sample if k not in ("cls", "__key__", "__url__", "__local_path__"))
                try:
                    img = load_image(io.BytesIO(sample[key]), name=f"{sample.get('__url__', '')}:{sample['__key__']}")
                except UnreadableImage as e:
                    yield e
                    continue
                yield (self.transform(img) if self.transform is not None else img), label
            if not self.cycle:
                return
