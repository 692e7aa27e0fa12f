"""Shared test helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(min(2, os.cpu_count() or 1))
# The CLI's default runtime is "auto", which measures three runtimes (with an ONNX and a TFLite
# export) once per model: the tests that do not test it run in torch. tests/test_tflite.py tests auto.
os.environ.setdefault("MOBILENETS_RUNTIME", "torch")

REPO = Path(__file__).resolve().parents[1]
# Google's TFLite models, labels and photos: ../shared/refdata next to the project (or $MOBILENETS_REFDATA)
REFDATA = Path(os.environ.get("MOBILENETS_REFDATA", REPO.parent / "shared" / "refdata"))


def shapes_image(rng: Any, size: tuple[int, int]) -> tuple[Any, list[list[int]], list[str]]:
    """A photo-like image with 1-3 filled rectangles ('red' or 'blue') and their boxes (x1, y1, x2, y2)."""
    import numpy as np
    from PIL import Image

    w, h = size
    arr = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
    boxes, names = [], []
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        red = bool(rng.integers(2))
        arr[y: y + bh, x: x + bw] = (220, 40, 40) if red else (40, 40, 220)
        boxes.append([x, y, x + bw, y + bh])
        names.append("red" if red else "blue")
    return Image.fromarray(arr), boxes, names


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so parity tests mean something)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


@pytest.fixture(scope="session")
def refdata() -> Path:
    if not REFDATA.is_dir():
        pytest.skip(f"reference data not found at {REFDATA} (Google's TFLite models and photos)")
    return REFDATA


def weights_through_a_cached_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str, suffix: str) -> Any:
    """Saved weights opened in ``runtime``: one export made in the cache, same logits as PyTorch. The session."""
    import numpy as np

    from mobilenets import create_model, save_weights
    from mobilenets.deploy.runtime_choice import open_session

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    model = randomize_bn(create_model("0.25-MobileNet-32", num_classes=4)).eval()
    w = save_weights(model, tmp_path / "w.safetensors", classes=list("abcd"))
    s = open_session(w, runtime)
    assert s.name == runtime and len(list((tmp_path / "cache" / suffix).glob(f"*.{suffix}"))) == 1
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        assert np.abs(s.run(x) - model(torch.from_numpy(x)).numpy()).max() <= 1e-4
    return s


# Shared builders: small real-format datasets and the fast training options of each task

DET_FAST = dict(model="0.25-SSDLite-MobileNet-96", progress=False, batch_size=8)
SEG_FAST = dict(model="0.25-DeepLabV3-MobileNet-64", progress=False, batch_size=6)


def make_coco_folder(root: Path, counts: dict[str, int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    cats = [{"id": 3, "name": "red"}, {"id": 7, "name": "blue"}]  # ids with gaps, as in COCO
    ann_id = 1
    for split, n in (counts or {"train2017": 24, "val2017": 8}).items():
        (root / split).mkdir(parents=True)
        images, anns = [], []
        for i in range(n):
            img, boxes, names = shapes_image(rng, (int(rng.integers(80, 120)), int(rng.integers(80, 120))))
            img.save(root / split / f"{i:04d}.jpg")
            images.append({"id": i + 1, "file_name": f"{i:04d}.jpg", "width": img.width, "height": img.height})
            for b, name in zip(boxes, names):
                anns.append({"id": ann_id, "image_id": i + 1, "category_id": 3 if name == "red" else 7,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                             "iscrowd": 0})
                ann_id += 1
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def make_voc_segmentation_folder(root: Path, n: int = 24) -> Path:
    """VOC layout with VOC's palette PNGs; the red and blue shapes are labelled aeroplane (1) and bicycle (2)."""
    from torchvision.datasets import VOCSegmentation  # noqa: F401  (the layout it reads)

    rng = np.random.default_rng(3)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    palette = [0] * 768
    palette[3:9] = [128, 0, 0, 0, 128, 0]
    palette[765:768] = [224, 224, 192]
    ids = [f"2007_{i:06d}" for i in range(n)]
    for stem in ids:
        img, mask = shapes_with_masks(rng, (int(rng.integers(70, 100)), int(rng.integers(70, 100))))
        img.save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        png = Image.fromarray(mask, mode="P")
        png.putpalette(palette)
        png.save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:18]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[18:]) + "\n")
    return root


def color_folder(root: Path, n: int = 12, formats: tuple[str, ...] = ("png", "jpg", "bmp")) -> None:
    """Three real-image classes (red, green, blue), in several formats and colour modes."""
    rng = np.random.default_rng(0)
    colors = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for cls, c in colors.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(np.array(c) + rng.normal(0, 25, (40 + i, 36, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr, "RGB")
            fmt = formats[i % len(formats)]
            if i % 5 == 1:
                img = img.convert("RGBA")
                fmt = "png"
            elif i % 5 == 2:
                img = img.convert("CMYK")
                fmt = "jpg"
            img.save(root / cls / f"{i}.{fmt}")


def shapes_with_masks(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """A photo-like image with 1-2 filled rectangles, red (class 1) or blue (class 2), and their mask
    with a one-pixel ignore border, like VOC's."""
    w, h = size
    arr = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
        x, y = int(rng.integers(1, w - bw - 1)), int(rng.integers(1, h - bh - 1))
        red = bool(rng.integers(2))
        arr[y: y + bh, x: x + bw] = (220, 40, 40) if red else (40, 40, 220)
        mask[y - 1: y + bh + 1, x - 1: x + bw + 1] = 255
        mask[y: y + bh, x: x + bw] = 1 if red else 2
    return Image.fromarray(arr), mask
