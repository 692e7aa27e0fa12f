"""Parity with torchvision and timm: their weights in our model give their outputs."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_bn

from mobilenets import create_model
from mobilenets.models.spec import build_arch
from mobilenets.weights.zoo_keys import convert_state_dict, key_map

pytestmark = pytest.mark.unit  # the sub-minute tier: python -m pytest -m unit

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


def _check(theirs: torch.nn.Module, ours: torch.nn.Module, source: str, size: int = 160) -> None:
    randomize_bn(theirs.eval())
    sd = convert_state_dict(theirs.state_dict(), source, ours)
    ours.load_state_dict(sd, strict=True)
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (theirs(x) - ours(x)).abs().max().item()
    assert diff <= 1e-5
    back = convert_state_dict(ours.state_dict(), "mobilenets", ours, target=source)
    theirs.load_state_dict(back, strict=True)  # the reverse direction covers every tensor


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.35, 1.4])
def test_torchvision_mobilenet_v2(alpha: float) -> None:
    tv = torchvision.models.mobilenet_v2(width_mult=alpha)
    _check(tv, create_model(f"{alpha}-MobileNetV2-224"), "torchvision")


@pytest.mark.parametrize(
    ("timm_name", "ours"),
    [
        ("mobilenetv1_100", "1.0-MobileNet-224"),
        ("mobilenetv2_100", "1.0-MobileNetV2-224"),
        ("mobilenetv2_050", "0.5-MobileNetV2-224"),
        ("mobilenetv2_140", "1.4-MobileNetV2-224"),
        ("mobilenetv2_035", "0.35-MobileNetV2-224"),
    ],
)
def test_timm(timm_name: str, ours: str) -> None:
    _check(timm.create_model(timm_name), create_model(ours), "timm", size=97)


def test_timm_with_tf_padding_and_eps() -> None:
    """timm's TF-mode model (pad_type='same', eps 1e-3) equals ours with padding='tf_same'."""
    theirs = timm.create_model("mobilenetv2_100", pad_type="same", bn_eps=1e-3)
    _check(theirs, create_model("1.0-MobileNetV2-224", padding="tf_same", bn_eps=1e-3), "timm", size=224)


def test_errors_name_what_is_missing() -> None:
    model = create_model("1.0-MobileNetV2-224")
    sd = torchvision.models.mobilenet_v2().state_dict()
    del sd["features.3.conv.1.0.weight"]
    with pytest.raises(KeyError, match=r"features\.3\.conv\.1\.0\.weight"):
        convert_state_dict(sd, "torchvision", model)
    with pytest.raises(ValueError, match="no MobileNet V1"):
        convert_state_dict({}, "torchvision", create_model("1.0-MobileNet-224"))
    with pytest.raises(ValueError, match="torchvision, timm"):
        convert_state_dict({}, "caffe", model)


def test_key_map_is_one_to_one() -> None:
    arch = build_arch(create_model("1.0-MobileNetV2-224").config)
    for fmt in ("torchvision", "timm"):
        m = key_map(arch, fmt)
        assert len(set(m.values())) == len(m)
