"""Activation-memory analysis (V2 paper Table 3) and the memory-efficient t-way split executor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn
from PIL import Image

from mobilenets import create_model
from mobilenets.analysis.memory import analyze, measure_peak
from mobilenets.models import memory_efficient


def test_table3_max_rows_match_arxiv_paper() -> None:
    v1, v2 = analyze("1.0-MobileNet-224"), analyze("1.0-MobileNetV2-224")
    assert v1.max_bytes == 64 * 112 * 112 * 2 and v2.max_bytes == 16 * 112 * 112 * 2
    assert abs(v1.max_bytes / 1000 - 1600) / 1600 < 0.02 and abs(v2.max_bytes / 1000 - 400) / 400 < 0.02
    assert [(r.size, r.channels) for r in v1.rows] == [(112, 64), (56, 128), (28, 256), (14, 512), (7, 1024), (1, 1024)]
    assert all(r.paper_channels == r.channels for r in v1.rows)
    assert [(r.size, r.channels) for r in v2.rows] == [(112, 16), (56, 24), (28, 32), (14, 96), (7, 320), (1, 1280)]
    assert all(r.note for r in v2.rows if r.paper_channels != r.channels)
    d = v2.to_dict()
    assert d["max_bytes_fp16"] == 401_408 and len(d["rows"]) == 6 and d["rows"][0]["paper_kb"] == 400
    assert analyze("1.0-MobileNetV2-224", dtype="fp32").to_dict()["max_bytes_fp16"] == 401_408


def test_split_bound_shrinks_with_t() -> None:
    a = analyze("1.0-MobileNetV2-224", dtype="fp32")
    peaks = [a.split_peak_values[t] for t in sorted(a.split_peak_values)]
    assert peaks == sorted(peaks, reverse=True) and a.plain_peak_values > a.split_peak_values[4]


@pytest.fixture(scope="module")
def photo_batch(refdata: Path) -> torch.Tensor:
    im = Image.open(refdata / "images" / "parrot.jpg").convert("RGB").resize((224, 224), Image.BILINEAR)
    return torch.from_numpy((np.asarray(im, dtype=np.float32) - 127.5) / 127.5).permute(2, 0, 1)[None]


@pytest.mark.parametrize("t", [1, 2, 4, 8, 1000])
def test_executor_equals_plain_model_on_google_weights(refdata: Path, photo_batch: torch.Tensor, t: int) -> None:
    from mobilenets.weights import load_model

    model = load_model(refdata / "models" / "mobilenet_v2_1.0_224_quant.tflite")  # TF SAME padding, 1001 classes
    with torch.inference_mode():
        ref = model(photo_batch)
    out = memory_efficient(model, split=t)(photo_batch)
    # Same sums in another order: equal to a few float32 rounding steps of the logits' scale (~17 here).
    assert (out - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    assert out.argmax().item() == 89  # macaw


@pytest.mark.parametrize("name", ["0.35-MobileNetV2-96", "1.0-MobileNetV2-224-nonlinear",
                                  "1.0-MobileNetV2-224-noshortcut", "0.5-MobileNetV2-224-t4"])
@pytest.mark.parametrize("size", [64, 97])
def test_executor_variants_and_odd_sizes(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=11)).eval()
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        ref = model(x)
    for t, band in ((3, 5), (8, 1)):
        out = memory_efficient(model, split=t, band_rows=band)(x)
        assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_measured_peak_matches_analysis_and_beats_plain() -> None:
    model = create_model("1.0-MobileNetV2-224").eval()
    x = torch.randn(1, 3, 224, 224)
    a = analyze(model, dtype="fp32")
    plain = measure_peak(model, x)
    ex = measure_peak(memory_efficient(model, split=8), x)
    assert ex <= 1.5 * a.split_peak_values[8] * 4
    assert plain / ex >= 4


def test_executor_rejects_v1() -> None:
    with pytest.raises(ValueError, match="MobileNetV2"):
        memory_efficient(create_model("1.0-MobileNet-224"))


def test_memory_cli_json() -> None:
    r = subprocess.run([sys.executable, "-m", "mobilenets", "memory", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    v1, v2 = json.loads(r.stdout)
    assert v1["max_bytes_fp16"] == 1_605_632 and v2["max_bytes_fp16"] == 401_408
    r = subprocess.run([sys.executable, "-m", "mobilenets", "memory", "0.5-MobileNetV2-160"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "t=4-way split" in r.stdout
