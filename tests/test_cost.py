"""The cost model against published numbers (papers, TF-slim tables, Keras/timm counts)."""

from __future__ import annotations

import math

import pytest

import mobilenets
from mobilenets import profile
from mobilenets.analysis.reported import V2_CHECKPOINTS

pytestmark = pytest.mark.unit  # the sub-minute tier: python -m pytest -m unit

# anchors-impl.md B.2 (timm/torchvision FlopCounterMode, 1000 classes): params incl. BN gamma/beta, MMACs
V1_GRID = {
    1.0: (4_231_976, (568.7, 418.1, 290.7, 186.4)),
    0.75: (2_585_560, (325.4, 239.3, 166.4, 106.8)),
    0.5: (1_331_592, (149.5, 110.0, 76.5, 49.2)),
    0.25: (470_072, (41.0, 30.2, 21.1, 13.6)),
}
V2_GRID = {
    1.4: (6_108_776, (582.2, 428.2, 297.9, 191.3, 108.4)),
    1.3: (5_386_792, (509.4, 374.7, 260.7, 167.4, 94.9)),
    1.0: (3_504_872, (300.8, 221.3, 154.1, 99.1, 56.3)),
    0.75: (2_636_424, (209.1, 153.9, 107.3, 69.1, 39.4)),
    0.5: (1_968_680, (97.1, 71.7, 50.2, 32.6, 18.9)),
    0.35: (1_677_128, (59.3, 43.9, 30.9, 20.2, 11.9)),
}
# paper-facts.md section 11: conv + FC(w+b), no BN
V1_PAPER_PARAMS = {1.0: 4_210_088, 0.75: 2_569_144, 0.5: 1_320_648, 0.25: 464_600}
V2_PAPER_PARAMS = {1.4: 6_060_840, 1.3: 5_342_536, 1.0: 3_470_760, 0.75: 2_609_784, 0.5: 1_950_136, 0.35: 1_663_048}


def test_v1_golden() -> None:
    p = profile("1.0-MobileNet-224")
    assert p.madds == 568_740_352
    assert p.params == 4_210_088
    assert p.trainable_params == 4_231_976
    assert p.trainable_params + p.bn_buffers == 4_253_864  # Keras "Total params"


def test_v2_golden() -> None:
    p = profile("1.0-MobileNetV2-224")
    assert p.madds == 300_774_272
    assert p.params == 3_470_760
    assert p.trainable_params == 3_504_872
    assert p.trainable_params + p.bn_buffers == 3_538_984  # Keras "Total params"


@pytest.mark.parametrize("alpha", list(V1_GRID))
def test_v1_grid(alpha: float) -> None:
    trainable, mmacs = V1_GRID[alpha]
    for res, expected in zip((224, 192, 160, 128), mmacs):
        p = profile(f"{alpha}-MobileNet-{res}")
        assert round(p.madds / 1e6, 1) == expected, (alpha, res)
        assert p.trainable_params == trainable
        assert p.params == V1_PAPER_PARAMS[alpha]


@pytest.mark.parametrize("alpha", list(V2_GRID))
def test_v2_grid(alpha: float) -> None:
    trainable, mmacs = V2_GRID[alpha]
    for res, expected in zip((224, 192, 160, 128, 96), mmacs):
        p = profile(f"{alpha}-MobileNetV2-{res}")
        assert round(p.madds / 1e6, 1) == expected, (alpha, res)
        assert p.trainable_params == trainable
        assert p.params == V2_PAPER_PARAMS[alpha]


def test_v2_tf_table_is_floored_madds() -> None:
    """All 22 MACs of the TF V2 README are floor(conv + FC MAdds) and params round to 2 decimals."""
    for ck in V2_CHECKPOINTS:
        p = profile(ck.model)
        assert math.floor(p.madds / 1e6) == int(ck.madds_m), ck.model
        assert f"{p.params / 1e6:.2f}" == ck.params_m, ck.model


def test_v1_per_layer_matches_slim_docstring() -> None:
    """TF-slim mobilenet_v1.py's per-layer table (1.0-224, body only) as a test oracle."""
    rows = {r.name: r for r in profile("1.0-MobileNet-224").layers}
    assert (rows["stem"].params, rows["stem"].madds) == (864, 10_838_016)
    assert (rows["blocks.0.depthwise"].params, rows["blocks.0.depthwise"].madds) == (288, 3_612_672)
    assert (rows["blocks.0.pointwise"].params, rows["blocks.0.pointwise"].madds) == (2_048, 25_690_112)
    assert (rows["blocks.1.depthwise"].params, rows["blocks.1.depthwise"].madds) == (576, 1_806_336)
    for i in range(6, 11):  # the five 14x14x512 blocks
        assert rows[f"blocks.{i}.depthwise"].madds == 903_168
        assert rows[f"blocks.{i}.pointwise"].madds == 51_380_224
    assert (rows["blocks.12.pointwise"].params, rows["blocks.12.pointwise"].madds) == (1_048_576, 51_380_224)
    body = [r for r in rows.values() if r.name != "classifier"]
    assert sum(r.params for r in body) == 3_185_088
    assert sum(r.madds for r in body) == 567_716_352


def test_v2_per_stage_params() -> None:
    """paper-facts 11b: V2 1.0-224 conv weights per table row."""
    p = profile("1.0-MobileNetV2-224")
    arch = mobilenets.build_arch(mobilenets.parse_name("1.0-MobileNetV2-224"))
    by_row: dict[int, list[int]] = {}
    block_row = {f"blocks.{b.index}": b.row for b in arch.blocks}
    for r in p.layers:
        key = block_row.get(r.name.rsplit(".", 1)[0], -1)
        by_row.setdefault(key, [0, 0])
        by_row[key][0] += r.params
        by_row[key][1] += r.madds
    assert by_row[1] == [800, 10_035_200]
    assert by_row[2] == [12_912, 54_942_720]
    assert by_row[3] == [37_392, 37_443_840]
    assert by_row[4] == [177_984, 38_497_536]
    assert by_row[5] == [296_448, 58_103_808]
    assert by_row[6] == [784_320, 46_560_192]
    assert by_row[7] == [469_440, 23_002_560]


def test_ablation_costs() -> None:
    conv = profile("1.0-MobileNet-224-conv")
    assert conv.madds == 4_867_293_184  # paper Table 4 prints 4866 (body only: 4,866,269,184)
    assert conv.params == 29_282_120
    shallow = profile("1.0-MobileNet-224", variant="shallow")
    assert shallow.madds == 307_323_392
    assert shallow.params == 2_876_328


def test_v1_table2_breakdown() -> None:
    by = {t.type: t for t in profile("1.0-MobileNet-224").by_type}
    assert round(by["Conv 1x1"].madds_pct, 2) == 94.86
    assert round(by["Conv 1x1"].weights_pct, 2) == 74.59
    assert round(by["Conv DW 3x3"].madds_pct, 2) == 3.06
    assert round(by["Conv 3x3"].madds_pct, 2) == 1.91  # the paper's 1.19 is a digit swap
    assert round(by["Fully Connected"].weights_pct, 2) == 24.33


def test_width_and_resolution_scaling() -> None:
    """Cost ~ alpha^2 and ~ rho^2 (V1 paper section 4)."""
    base = profile("1.0-MobileNet-224")
    half = profile("0.5-MobileNet-224")
    assert 0.24 < half.madds / base.madds < 0.28
    low = profile("1.0-MobileNet-112")
    assert 0.24 < low.madds / base.madds < 0.27


def test_profile_accepts_model_and_sizes() -> None:
    m = mobilenets.create_model("0.5-MobileNetV2-160", num_classes=10)
    p = profile(m)
    assert p.input_size == (160, 160)
    assert profile(m, input_size=(97, 131)).layers[-2].output_shape == (1280, 4, 5)
    assert profile("1.0-MobileNetV2-224", num_classes=1001).params == 3_472_041
    assert profile("1.0-MobileNet-224", num_classes=1001).params == 4_211_113
    with pytest.raises(TypeError):
        profile(object())  # type: ignore[arg-type]


def test_to_dict_is_json_ready() -> None:
    import json

    d = profile("0.25-MobileNet-128").to_dict()
    assert json.loads(json.dumps(d))["madds"] == 13_570_048
    assert d["layers"][0]["name"] == "stem"
