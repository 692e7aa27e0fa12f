"""Reading WebDataset tar shards (written by :mod:`mobilenets.data.shard_writer`) as a stream.

``--data OUT`` streams ``OUT/train-*.tar``: each process of a ``torchrun`` job and each loader
worker reads its own shards (``webdataset`` splits them). Resuming a sharded run restarts the
interrupted epoch from its beginning.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset

from .images import UnreadableImage, load_image

INDEX = "shards.json"


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

    def __iter__(self):
        import webdataset as wds

        pipeline = wds.WebDataset(self.urls, shardshuffle=len(self.urls) if self.shuffle else False,
                                  nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                  seed=self.seed * 1000 + self.epoch, empty_check=False)
        if self.shuffle:
            pipeline = pipeline.shuffle(1000, seed=self.seed * 1000 + self.epoch)
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
