"""Image decoding that converts odd-but-valid images and reports unreadable ones by name."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


class UnreadableImage(ValueError):
    """A file that is not a decodable image (empty, truncated, not an image, too large)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and float are rescaled, palette/alpha flattened on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(path: str | Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Open, apply the EXIF orientation and convert to RGB; raise :class:`UnreadableImage` otherwise.

    ``path`` may be a file object (e.g. bytes from a tar shard); ``name`` then labels errors.
    """
    p = Path(path) if isinstance(path, (str, Path)) else path
    label = name or str(p)
    try:
        with warnings.catch_warnings():
            # a "possible decompression bomb" warning becomes an error: do not decode it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as opened:
                opened.load()
                return to_rgb(ImageOps.exif_transpose(opened))
    except FileNotFoundError:
        raise UnreadableImage(label, "file not found") from None
    except IsADirectoryError:
        raise UnreadableImage(label, "is a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(label, f"refused, too many pixels (decompression bomb?): {e}") from None
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError, EOFError) as e:
        empty = isinstance(p, Path) and p.is_file() and p.stat().st_size == 0
        raise UnreadableImage(label, "empty file" if empty else f"not a readable image ({e})") from None


def find_images(paths: list[str | Path]) -> list[Path]:
    """Files given directly, plus image files found recursively under given folders (sorted)."""
    out: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            out.extend(sorted(f for f in item.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            out.append(item)
    return out
