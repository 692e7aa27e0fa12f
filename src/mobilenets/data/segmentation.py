"""Segmentation data: Pascal VOC folders, image + mask folders, and an embedded default of real digits.

A sample is ``(image, mask)``: the image as a PIL image or uint8 tensor, the mask a uint8 tensor
``[H, W]`` of class ids (0 = background) with 255 = ignore. Class names include the background.

* **digits** (no download): the detection canvases (:mod:`mobilenets.data.detection`) with a class
  per pixel - 0 background, 1..10 the digits "0".."9" where the glyph covers at least half the
  pixel, 255 on the faint edge in between; train canvases drawn anew every epoch, held-out fixed.
  Their digits (resized 5-7x) suit a DeepLabv3 head, which predicts at 1/8 of the input (1/16 at
  its default output stride) and cannot draw smaller strokes with its bilinear upsampling.
  Measured on the held-out masks: the ground truth averaged to the logit grid and upsampled back
  scores mIoU 0.33 at 1/16 and 0.81 at 1/8 on 2-5x digits; 0.66 at 1/16 and 0.97 at 1/8 on 5-7x
  (0.83 at 1/8 when the digits were scaled as 8x8 blocks instead of resized bilinearly).
* **VOC** (``JPEGImages/``, ``SegmentationClass/*.png`` palette masks, ``ImageSets/Segmentation/
  {train,val}.txt``): VOC's 21 classes, 255 = ignore (object boundaries).
* **images and masks** in any two folders whose files match by stem (``images/`` + ``masks/``,
  ``JPEGImages/`` + ``SegmentationClass/`` without image sets, ``img/`` + ``gt/``, ``photo.jpg`` beside
  ``photo_mask.png``), split by the folders' names (``train/``, ``val/``) or by ``--val-split``. Masks
  may hold class ids (palette or gray; 255 = ignore), 0/255 binary values, gray levels or RGB colours
  (:class:`MaskEncoding`); ``classes.txt`` (one name per line, background first) or CVAT's
  ``labelmap.txt`` names the classes, else they are ``background, class_1, ...``. A mask of another
  size than its image is resized to it with nearest neighbours, and reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import DataIssues, ImageIndex, image_dirs, probe_images, random_split, split_role
from .detection import DIGIT_CANVAS, DIGIT_SCALES, DIGITS_PER_CANVAS, canvas, digit_split
from .images import IMAGE_EXTENSIONS, UnreadableImage, load_image

IGNORE_INDEX = 255


@dataclass
class SegmentationSplits:
    train: Dataset
    val: Dataset
    classes: list[str]  # the background first
    issues: DataIssues = field(default_factory=DataIssues)


MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_label", "-label", "_labels", "_gt", "_seg", "_segmentation",
                 "_annotation", "_class")
_MASK_WORDS = ("mask", "label", "annotation", "gt", "segmentation", "class", "trimap")
_NOT_CLASS_WORDS = ("object", "instance")
_MAX_MASK_VALUES = 64  # a mask holds a few values; a photo holds many


def is_voc_segmentation_folder(root: Path) -> bool:
    """VOC's layout with its image sets (``ImageSets/Segmentation/train.txt`` and ``val.txt``)."""
    sets = root / "ImageSets" / "Segmentation"
    return (root / "SegmentationClass").is_dir() and (root / "JPEGImages").is_dir() and \
        (sets / "train.txt").is_file() and (sets / "val.txt").is_file()


def is_mask_folder(root: Path) -> bool:
    return root.is_dir() and bool(mask_pairs(root))


def mask_stem(path: Path) -> str:
    """A mask's image stem: ``photo_mask.png`` -> ``photo``."""
    stem = path.stem
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _looks_like_mask(path: Path) -> bool:
    """A few distinct values (or colours): a mask, not a photo."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("P", "L", "1", "I", "I;16") else im)
    except (OSError, ValueError):
        return False
    flat = arr.reshape(-1, 3) @ np.array([65536, 256, 1]) if arr.ndim == 3 else arr.reshape(-1)
    return len(np.unique(flat)) <= _MAX_MASK_VALUES


def _name_score(folder: Path) -> int:
    name = str(folder).lower()
    return 2 * any(w in folder.name.lower() for w in _MASK_WORDS) - 3 * any(w in name for w in _NOT_CLASS_WORDS)


def mask_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(images folder, masks folder) pairs under ``root`` whose files match by stem, whatever the folders
    are called; a folder pairs with itself when its masks carry a suffix (``photo_mask.png``). An images
    folder with several mask folders takes the most mask-like by name (VOC: class, not object, masks)."""
    folders = image_dirs(root, 2)
    files = {d: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
             for d in folders}
    maskish = {d: _looks_like_mask(files[d][0]) for d in folders}
    best: dict[Path, tuple[Path, tuple[int, ...]]] = {}
    for a, b in itertools.permutations(folders, 2):
        if maskish[a] or not maskish[b]:
            continue
        overlap = len({f.stem for f in files[a]} & {mask_stem(f) for f in files[b]})
        # more shared stems; then the same split (train/images with train/masks), the same parent, the name
        rank = (overlap, split_role(a, root) == split_role(b, root), a.parent == b.parent, _name_score(b))
        if overlap >= max(1, 0.5 * min(len(files[a]), len(files[b]))) and (a not in best or rank > best[a][1]):
            best[a] = (b, rank)
    pairs = {a: b for a, (b, _) in best.items()}
    for d in folders:  # photo.jpg beside photo_mask.png
        masks = [f for f in files[d] if mask_stem(f) != f.stem]
        photos = [f for f in files[d] if mask_stem(f) == f.stem]
        if d not in pairs and d not in pairs.values() and masks and photos and _looks_like_mask(masks[0]) \
                and not _looks_like_mask(photos[0]):
            pairs[d] = d
    return sorted(pairs.items())


class DigitMasks(Dataset):
    """Digit canvases with class masks; canvas ``i`` of epoch ``e`` depends only on (seed, e, i)
    (with ``fresh=False`` only on (seed, i))."""

    def __init__(self, digits: np.ndarray, labels: np.ndarray, count: int, seed: int, fresh: bool = False,
                 size: int = DIGIT_CANVAS) -> None:
        self.digits, self.labels, self.count = digits, labels, count
        self.seed, self.fresh, self.size = seed, fresh, size
        self.epoch = 0
        self.classes = ["background", *(str(d) for d in range(10))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch if self.fresh else 0, i))
        img, _, _, mask = canvas(rng, self.digits, self.labels, self.size, DIGIT_SCALES, DIGITS_PER_CANVAS)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)


def digit_mask_splits(val_split: float = 0.2, seed: int = 0, train_count: int = 1200) -> SegmentationSplits:
    """Train and held-out canvases from disjoint digit images (stratified, seeded)."""
    (tr_x, tr_y), (va_x, va_y), val_count = digit_split(val_split, seed, train_count)
    train = DigitMasks(tr_x, tr_y, train_count, seed * 2 + 1, fresh=True)
    return SegmentationSplits(train, DigitMasks(va_x, va_y, val_count, seed * 2 + 2), train.classes)


@dataclass(frozen=True)
class MaskEncoding:
    """How a dataset's mask files hold class ids, found by reading them all:

    * ``ids``: values are class ids (palette indices, or gray values 0..k), 255 = ignore (VOC);
    * ``binary``: values 0 and 255 only: 255 is the foreground, class 1;
    * ``levels``: a few gray levels spread far apart (0, 128; 0, 50, 100): each level a class, in order;
    * ``colors``: RGB masks: each colour a class (black, or the first in ``labelmap.txt``, first).
    """

    kind: str = "ids"
    lut: tuple[int, ...] | None = None  # value -> class id, for ids/binary/levels
    colors: tuple[tuple[int, int], ...] = ()  # (0xRRGGBB, class id), for colors

    def decode(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 3:
            if self.kind != "colors":
                arr = arr[..., 0]  # a gray mask saved as RGB
            else:
                key = arr[..., :3].astype(np.int64) @ np.array([65536, 256, 1])
                out = np.full(key.shape, IGNORE_INDEX, dtype=np.uint8)
                for rgb, cls in self.colors:
                    out[key == rgb] = cls
                return out
        if self.lut is None:
            return arr.astype(np.uint8)
        return np.asarray(self.lut, dtype=np.uint8)[np.clip(arr, 0, 255).astype(np.int64)]


def _read_mask_array(path: Path) -> tuple[np.ndarray, bool]:
    """The mask's values (``[H, W]``, or ``[H, W, 3]`` for colour masks) and whether it is a palette image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L", "1"):
                return np.array(im, dtype=np.uint8), im.mode == "P"
            if im.mode in ("I", "I;16", "F"):
                return np.clip(np.array(im), 0, 255).astype(np.uint8), False
            rgb = np.array(im.convert("RGB"))
            gray = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
            return (rgb[..., 0] if gray else rgb), False
    except (OSError, ValueError, SyntaxError) as e:
        raise UnreadableImage(path, f"not a readable mask ({e})") from None


def load_mask(path: Path, encoding: MaskEncoding | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A mask file's class ids ``[H, W]`` uint8, decoded by ``encoding`` and, when ``size`` (height,
    width) differs from the file's, resized with nearest neighbours."""
    from PIL import Image

    ids = (encoding or MaskEncoding()).decode(_read_mask_array(path)[0])
    if size is not None and ids.shape != tuple(size):
        ids = np.array(Image.fromarray(ids).resize((size[1], size[0]), Image.Resampling.NEAREST))
    return torch.from_numpy(np.ascontiguousarray(ids))


def _label_names(root: Path) -> tuple[list[str] | None, dict[int, str]]:
    """Class names from ``classes.txt`` / ``labels.txt`` (one per line, background first), or CVAT's
    ``labelmap.txt`` (``name:r,g,b::``, giving each colour its name)."""
    for f in ("classes.txt", "labels.txt"):
        if (root / f).is_file():
            return [line.strip() for line in (root / f).read_text().splitlines() if line.strip()], {}
    if (root / "labelmap.txt").is_file():
        names, colors = [], {}
        for line in (root / "labelmap.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#") and ":" in line:
                name, rgb = line.split(":")[:2]
                try:
                    r, g, b = (int(v) for v in rgb.split(","))
                except ValueError:
                    continue
                colors[r * 65536 + g * 256 + b] = name.strip()
                names.append(name.strip())
        return names, colors
    return None, {}


def mask_encoding(masks: list[Path], root: Path, issues: DataIssues) -> tuple[MaskEncoding, list[str],
                                                                              dict[Path, tuple[int, int]]]:
    """Read every mask once: how they hold classes, the class names, and each mask's size."""
    from tqdm.auto import tqdm

    values: set[int] = set()
    colors: set[int] = set()
    palette = False
    sizes: dict[Path, tuple[int, int]] = {}
    for m in tqdm(masks, desc="reading masks", unit="mask", disable=len(masks) < 2000, leave=False):
        try:
            arr, is_palette = _read_mask_array(m)
            palette |= is_palette
        except UnreadableImage as e:
            issues.add("unreadable mask: its image left out", m, e.reason, image_left_out=True)
            continue
        sizes[m] = arr.shape[:2]
        if arr.ndim == 3:
            colors.update(np.unique(arr.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1])).tolist())
        else:
            values.update(np.unique(arr).tolist())
    names, named_colors = _label_names(root)
    if colors:
        if values:
            colors.update(v * 65793 for v in values)  # gray masks among colour ones
        order = [c for c in named_colors if c in colors] + sorted(c for c in colors if c not in named_colors)
        if 0 in order and 0 not in named_colors:
            order.remove(0)
            order.insert(0, 0)
        enc = MaskEncoding("colors", colors=tuple((c, i) for i, c in enumerate(order)))
        default = [named_colors.get(c, "background" if c == 0 else f"class_{c >> 16}_{(c >> 8) & 255}_{c & 255}")
                   for c in order]
        return enc, names if names and len(names) == len(order) else default, sizes
    ids = sorted(values - {IGNORE_INDEX})
    if not palette and values == {0, 255} and not (names and len(names) > 2):
        lut = [0] * 256
        lut[255] = 1
        return MaskEncoding("binary", tuple(lut)), names or ["background", "foreground"], sizes
    if not palette and not names and ids and ids[-1] >= 32 and ids[-1] > 2 * len(ids):  # e.g. 0, 128
        lut = [IGNORE_INDEX] * 256
        for i, v in enumerate(sorted(values)):
            lut[v] = i
        issues.add("mask gray levels are not class ids: each level is a class, in order", root,
                   f"levels {sorted(values)}")
        return MaskEncoding("levels", tuple(lut)), [f"level_{v}" if v else "background" for v in sorted(values)], sizes
    top = ids[-1] if ids else 1
    return MaskEncoding("ids"), names or ["background", *(f"class_{k}" for k in range(1, top + 1))], sizes


class MaskedImages(Dataset):
    """Image files with mask files, decoded when read (an unreadable one raises :class:`UnreadableImage`);
    masks of another size than their image are resized to it with nearest neighbours."""

    def __init__(self, pairs: list[tuple[Path, Path]], classes: list[str], encoding: MaskEncoding | None = None,
                 sizes: dict[Path, tuple[int, int]] | None = None) -> None:
        self.pairs, self.classes = pairs, classes
        self.encoding = encoding or MaskEncoding()
        self.sizes = sizes or {}  # image sizes where the mask's differs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        image, mask = self.pairs[i]
        img = load_image(image)
        return img, load_mask(mask, self.encoding, (img.height, img.width))


def _checked_pairs(pairs: list[tuple[Path, Path]], mask_sizes: dict[Path, tuple[int, int]],
                   issues: DataIssues) -> list[tuple[Path, Path]]:
    """Pairs whose image and mask can be read; masks of another size are reported (and resized when read)."""
    infos = probe_images([p for p, _ in pairs], issues)
    out = []
    for image, mask in pairs:
        size = infos[image].size
        if size is None or mask not in mask_sizes:
            continue
        if size != mask_sizes[mask]:
            (h, w), (mh, mw) = size, mask_sizes[mask]
            issues.add("mask of another size than its image: resized with nearest neighbours", mask,
                       f"mask {mw}x{mh}, image {w}x{h}")
        out.append((image, mask))
    return out


def voc_segmentation_splits(root: Path, voc_classes: list[str]) -> SegmentationSplits:
    """VOC's layout: ``ImageSets/Segmentation/train.txt`` and ``val.txt``; VOC's 21 classes unless the
    folder names its own."""
    issues = DataIssues()
    sets = root / "ImageSets" / "Segmentation"
    images = ImageIndex([root / "JPEGImages"])
    split_pairs = []
    for name in ("train", "val"):
        pairs = []
        for i in [s.split()[0] for s in (sets / f"{name}.txt").read_text().splitlines() if s.strip()]:
            image, mask = images.find(i), root / "SegmentationClass" / f"{i}.png"
            if image is None or not mask.is_file():
                issues.add("image or mask named in the image set not found: left out", sets / f"{name}.txt",
                           f"{i}: {'no image' if image is None else 'no mask ' + mask.name}", image_left_out=True)
            else:
                pairs.append((image, mask))
        split_pairs.append(pairs)
    enc, _, sizes = mask_encoding([m for p in split_pairs for _, m in p], root, issues)
    classes = _label_names(root)[0] or voc_classes
    train, val = (_checked_pairs(p, sizes, issues) for p in split_pairs)
    return SegmentationSplits(MaskedImages(train, classes, enc), MaskedImages(val, classes, enc), classes, issues)


def _matched(images_dir: Path, masks_dir: Path, issues: DataIssues) -> list[tuple[Path, Path]]:
    """An images folder's files with their masks by stem; the unmatched on either side are recorded."""
    images = sorted(f for f in images_dir.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    masks = sorted(f for f in masks_dir.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if images_dir == masks_dir:
        masks = [m for m in masks if mask_stem(m) != m.stem]
        images = [f for f in images if f not in set(masks)]
    by_stem = {mask_stem(m): m for m in masks}
    pairs = [(f, by_stem[f.stem]) for f in images if f.stem in by_stem]
    for f in images:
        if f.stem not in by_stem:
            issues.add("image without a mask: left out", f, f"no {f.stem}.png in {masks_dir}", image_left_out=True)
    used = {m for _, m in pairs}
    for m in masks:
        if m not in used:
            issues.add("mask without an image: left out", m, f"no {mask_stem(m)}.* in {images_dir}")
    return pairs


def mask_folder_splits(root: Path, val_split: float = 0.2, seed: int = 0) -> SegmentationSplits:
    """Images and masks matched by stem in any folders (see :func:`mask_pairs`), split by the folders'
    names (``train/``, ``val/``) or by ``val_split``."""
    issues = DataIssues()
    found = mask_pairs(root)
    if not found:
        raise ValueError(f"{root}: no images folder with a masks folder of the same file stems found")
    roles = {images: split_role(images, root) for images, _ in found}
    train_dirs = [(i, m) for i, m in found if roles[i] == "train"]
    held = [(i, m) for i, m in found if roles[i] == "val"] or [(i, m) for i, m in found if roles[i] == "test"]
    if not train_dirs:
        train_dirs, held = found, []
    train = [p for i, m in train_dirs for p in _matched(i, m, issues)]
    val = [p for i, m in held for p in _matched(i, m, issues)]
    enc, classes, sizes = mask_encoding([m for _, m in train + val], root, issues)
    train, val = _checked_pairs(train, sizes, issues), _checked_pairs(val, sizes, issues)
    if not held:
        tr, va = random_split(len(train), val_split, seed)
        train, val = [train[i] for i in tr], [train[i] for i in va]
    return SegmentationSplits(MaskedImages(train, classes, enc), MaskedImages(val, classes, enc), classes, issues)


def load_segmentation_splits(spec: Any, voc_classes: list[str]) -> SegmentationSplits:
    """The train and held-out segmentation datasets a :class:`~mobilenets.data.DataSpec` names."""
    if spec.kind == "digits":
        return digit_mask_splits(spec.val_split, spec.seed)
    if spec.kind == "voc_seg":
        splits = voc_segmentation_splits(Path(spec.root), voc_classes)
    elif spec.kind == "masks":
        splits = mask_folder_splits(Path(spec.root), spec.val_split, spec.seed)
    else:
        raise ValueError(f"{spec.kind!r} data holds no masks; segmentation takes a VOC folder, an images + masks "
                         "folder, or 'digits'")
    if not len(cast(Sized, splits.train)):
        raise ValueError(f"{spec.root}: none of the training images could be used\n{splits.issues.summary()}")
    return splits

