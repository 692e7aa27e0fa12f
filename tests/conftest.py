"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
# The CLI's default runtime is "auto", which measures three runtimes (with an ONNX and a TFLite
# export) once per model: the tests that do not test it run in torch. tests/test_tflite.py tests auto.
os.environ.setdefault("MOBILENETS_RUNTIME", "torch")

REPO = Path(__file__).resolve().parents[1]
# Google's TFLite models, labels and photos: ../shared/refdata next to the project (or $MOBILENETS_REFDATA)
REFDATA = Path(os.environ.get("MOBILENETS_REFDATA", REPO.parent / "shared" / "refdata"))


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
