"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

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
    from mobilenets.deploy.session import open_session

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    model = randomize_bn(create_model("0.25-MobileNet-32", num_classes=4)).eval()
    w = save_weights(model, tmp_path / "w.safetensors", classes=list("abcd"))
    s = open_session(w, runtime)
    assert s.name == runtime and len(list((tmp_path / "cache" / suffix).glob(f"*.{suffix}"))) == 1
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        assert np.abs(s.run(x) - model(torch.from_numpy(x)).numpy()).max() <= 1e-4
    return s
