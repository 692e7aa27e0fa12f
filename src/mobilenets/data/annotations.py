"""What the annotation readers share: a record of every problem found, by file; a cheap look at each
image file (does it exist, what is it, how large is it shown); boxes checked against their image;
and the split of a dataset that comes without one.

Real exports are messy: boxes past the image edge, zero-area boxes, unknown classes, annotations of
images that are not there, a ``.jpg`` that is a PNG, a size tag of 0. A reader records each problem
with the file it is in (:class:`DataIssues`), repairs what it can (clips a box, uses the image's real
size), leaves out what it cannot, and never drops anything without saying so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import IMAGE_EXTENSIONS, load_image

#: What the file's content is, by PIL format, and the extensions that say so.
_FORMAT_EXTENSIONS = {"JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"), "PNG": (".png",), "BMP": (".bmp",),
                      "GIF": (".gif",), "TIFF": (".tif", ".tiff"), "WEBP": (".webp",), "PPM": (".ppm", ".pgm", ".pbm")}
_EXIF_ORIENTATION = 0x0112
#: A box may pass the image edge by this many pixels without a report (1-based VOC coordinates, rounding).
EDGE_TOLERANCE = 1.0


@dataclass
class DataIssues:
    """Problems found in a dataset's files and annotations, each with its file and a detail.

    ``kind`` says what happened to the data (e.g. "box past the image edge: clipped", "image file not
    found: left out"), so that the counts read as a report.
    """

    items: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, file, detail)
    images_left_out: int = 0  # images (with their annotations) that the data cannot use

    def add(self, kind: str, file: str | Path, detail: str = "", image_left_out: bool = False) -> None:
        self.items.append((kind, str(file), detail))
        self.images_left_out += image_left_out

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        return dict(Counter(k for k, _, _ in self.items).most_common())

    def files(self) -> int:
        return len({f for _, f, _ in self.items})

    def summary(self, examples: int = 3) -> str:
        """A few lines: each kind with its count and its first files."""
        if not self.items:
            return "no problems found in the annotations"
        lines = [f"{len(self.items)} problem(s) in {self.files()} file(s) of the data:"]
        for kind, n in self.counts().items():
            lines.append(f"  {n:5d} x {kind}")
            for _, f, d in [i for i in self.items if i[0] == kind][:examples]:
                lines.append(f"          {f}{': ' + d if d else ''}")
        return "\n".join(lines)

    def text(self) -> str:
        """Every problem, one per line (``kind<TAB>file<TAB>detail``)."""
        return "".join(f"{k}\t{f}\t{d}\n" for k, f, d in self.items)


@dataclass
class DetectionSplits:
    train: Dataset
    val: Dataset
    classes: list[str]  # without the background: label k is classes[k - 1]
    issues: DataIssues = field(default_factory=DataIssues)


def box_target(boxes: Any, labels: Sequence[int], image_id: int, ignore: Sequence[bool] | None = None,
               size: tuple[int, int] | None = None) -> dict[str, Any]:
    """A detection target: ``boxes`` ``[k, 4]`` (x1, y1, x2, y2 pixels), ``labels`` 1..C, ``ignore``
    (crowd or difficult: neither trained on nor counted by the evaluation), and the image's ``size``
    (height, width) when known before decoding it."""
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    target = {"boxes": b, "labels": torch.tensor(list(labels), dtype=torch.int64), "image_id": image_id,
              "ignore": torch.tensor(list(ignore) if ignore is not None else [False] * len(labels), dtype=torch.bool)}
    return target if size is None else {**target, "size": size}


def normalized_boxes(ds: Dataset) -> torch.Tensor:
    """Every box of an annotated dataset, ``x1, y1, x2, y2`` as fractions of its image (empty when the
    dataset does not list its images' sizes)."""
    out = [t["boxes"] / torch.tensor([t["size"][1], t["size"][0]] * 2, dtype=torch.float32)
           for _, t in getattr(ds, "samples", []) if "size" in t]
    return torch.cat(out) if out else torch.zeros(0, 4)


def repeat_factors(ds: Dataset, threshold: float) -> list[float]:
    """LVIS's repeat-factor sampling (Gupta et al. 2019, Detectron2's ``RepeatFactorTrainingSampler``):
    a class found in a fraction ``f`` of the training images gets ``max(1, sqrt(threshold / f))``, and
    each image the largest factor of its classes, so images of rare classes are seen more often. Needs
    the classes of every image without decoding it (detection annotations, ImageFolder labels)."""
    samples = getattr(ds, "samples", None)
    if samples is None:
        raise ValueError("repeat-factor sampling needs each image's classes from its annotations: detection "
                         "or ImageFolder data, not tar shards or in-memory data")
    per_image: list[set[int]] = []
    for _, target in samples:
        if isinstance(target, dict) and "labels" in target:
            per_image.append({int(c) for c in target["labels"].tolist()})
        elif isinstance(target, int):
            per_image.append({target})
        else:
            raise ValueError("repeat-factor sampling needs each image's classes: masks do not list them")
    counts = Counter(c for classes in per_image for c in classes)
    factor = {c: max(1.0, (threshold * len(per_image) / n) ** 0.5) for c, n in counts.items()}
    return [max((factor[c] for c in classes), default=1.0) for classes in per_image]


class AnnotatedImages(Dataset):
    """Image files with their targets (boxes or mask files), decoded when read."""

    def __init__(self, samples: list[tuple[Path, Any]], classes: list[str]) -> None:
        self.samples, self.classes = samples, classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        path, target = self.samples[i]
        return load_image(path), target


@dataclass(frozen=True)
class ImageInfo:
    """What a look at an image file's header tells: its size as shown (EXIF orientation applied,
    height, width) and its real format, or why it cannot be used."""

    path: Path
    size: tuple[int, int] | None = None
    format: str | None = None
    problem: str | None = None  # "file not found", "not a readable image (...)"


def probe_image(path: Path) -> ImageInfo:
    """Read the header only (no decoding): thousands of files a second."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return ImageInfo(path, problem="file not found" if not path.exists() else "not a file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1) if im.format in ("JPEG", "TIFF", "WEBP", "PNG") else 1
            fmt = im.format
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        empty = path.stat().st_size == 0
        return ImageInfo(path, problem="empty file" if empty else f"not a readable image ({e})")
    if orientation in (5, 6, 7, 8):  # rotated 90 degrees when shown
        w, h = h, w
    return ImageInfo(path, (h, w), fmt)


def probe_images(paths: Sequence[Path], issues: DataIssues, progress: bool = False) -> dict[Path, ImageInfo]:
    """Every file's :class:`ImageInfo` (threads: the work is I/O); missing and unreadable files and
    extensions that lie about the content are recorded in ``issues``."""
    from tqdm.auto import tqdm

    unique = list(dict.fromkeys(paths))
    with ThreadPoolExecutor(8) as pool:
        infos = list(tqdm(pool.map(probe_image, unique), total=len(unique), desc="checking images", unit="image",
                          disable=not progress or len(unique) < 2000, leave=False))
    for info in infos:
        if info.problem == "file not found":
            issues.add("image file not found: left out", info.path, image_left_out=True)
        elif info.problem:
            issues.add("unreadable image: left out", info.path, info.problem, image_left_out=True)
        elif info.format in _FORMAT_EXTENSIONS and info.path.suffix.lower() not in _FORMAT_EXTENSIONS[info.format]:
            issues.add("extension does not match the content: read as it is", info.path,
                       f"the file is {info.format}")
    return {i.path: i for i in infos}


def check_boxes(boxes: np.ndarray, size: tuple[int, int], file: str | Path, issues: DataIssues
                ) -> tuple[np.ndarray, np.ndarray]:
    """``boxes`` (``[k, 4]`` x1, y1, x2, y2 pixels) checked against an image of ``size`` (height, width):
    boxes past the edge are clipped, those with no area (before or after clipping) or non-finite
    coordinates are left out, each recorded. Returns the kept boxes and their indices."""
    h, w = size
    keep, out = [], []
    for i, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        shown = "[" + ", ".join(f"{v:g}" for v in b) + "]"
        if not np.isfinite(b).all():
            issues.add("box with a non-numeric coordinate: left out", file, shown)
            continue
        if b[2] <= b[0] or b[3] <= b[1]:
            issues.add("box of zero or negative size: left out", file, shown)
            continue
        c = np.array([min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w), min(max(b[3], 0), h)])
        if c[2] <= c[0] or c[3] <= c[1]:
            issues.add("box outside the image: left out", file, f"{shown} in a {w}x{h} image")
            continue
        if np.abs(c - b).max() > EDGE_TOLERANCE:
            issues.add("box past the image edge: clipped", file, f"{shown} in a {w}x{h} image")
        keep.append(i)
        out.append(c)
    return np.array(out, dtype=np.float32).reshape(-1, 4), np.array(keep, dtype=np.int64)


def split_role(path: Path, root: Path) -> str | None:
    """"train" or "val" from the words in a path below ``root`` (``custom_train.json``,
    ``valid/_annotations.coco.json``, ``images/val2017``), or None."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    words = set(_words(str(rel.parent / rel.stem).lower()))
    if words & {"train", "training", "trainval"}:
        return "train"
    if words & {"val", "valid", "validation", "dev"}:
        return "val"
    if words & {"test", "testing"}:
        return "test"
    return None


def _words(s: str) -> list[str]:
    """Alphabetic runs: ``instances_val2017`` -> instances, val."""
    out, cur = [], ""
    for ch in s:
        if ch.isalpha():
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


def pick_splits(found: dict[Path, str | None], what: str) -> tuple[Path, Path | None]:
    """The training file or folder and the held-out one (val, else test) among ``found`` (path -> role);
    ``None`` held-out means "split the training one"."""
    train = [p for p, r in found.items() if r == "train"]
    held = [p for p, r in found.items() if r == "val"] or [p for p, r in found.items() if r == "test"]
    if len(found) == 1:
        return next(iter(found)), None
    if len(train) == 1:
        return train[0], held[0] if held else None
    listed = ", ".join(str(p) for p in found)
    raise ValueError(f"cannot tell which {what} is for training among {listed}; name one with 'train' and one with "
                     "'val' (or pass one of them as --data)")


def random_split(n: int, val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/held-out indices of ``n`` samples (at least one of each when ``n`` >= 2)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * val_split)), n - 1) if n >= 2 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class ImageIndex:
    """The image files of some folders by name and by stem, for annotations that name their image
    loosely (an id, a stem, a file name a labeling service rewrote)."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.folders: dict[Path, tuple[dict[str, Path], dict[str, Path]]] = {}
        for d in dict.fromkeys(dirs):
            self._folder(d)

    def _folder(self, d: Path) -> tuple[dict[str, Path], dict[str, Path]]:
        if d not in self.folders:
            files = [p for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()] \
                if d.is_dir() else []
            self.folders[d] = ({p.name: p for p in files}, {p.stem: p for p in reversed(files)})
        return self.folders[d]

    def find(self, *keys: str, near: Path | None = None) -> Path | None:
        """The first key that names an image (a file name, else a stem), in ``near`` first."""
        order = ([self._folder(near)] if near is not None else []) + list(self.folders.values())
        for k in keys:
            for by_name, by_stem in order:
                if k and (k in by_name or k in by_stem):
                    return by_name.get(k) or by_stem[k]
        return None


def image_dirs(root: Path, depth: int = 2) -> list[Path]:
    """Folders under ``root`` (itself included, up to ``depth`` levels) that hold image files."""
    out, level = [], [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            try:
                entries = list(d.iterdir())
            except OSError:
                continue
            if any(e.suffix.lower() in IMAGE_EXTENSIONS and e.is_file() for e in entries):
                out.append(d)
            nxt += sorted(e for e in entries if e.is_dir() and not e.name.startswith("."))
        level = nxt
    return out
