"""Published ImageNet results of Google's MobileNet checkpoints, stored as data with their source.

Used by ``mobilenets paper`` (cost columns checked against our cost model) and by
``mobilenets choose`` (accuracy of each candidate).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.spec import ModelConfig


@dataclass(frozen=True)
class CheckpointResult:
    model: str  # our canonical name
    tf_name: str
    madds_m: str  # as printed (millions)
    params_m: str  # as printed (millions)
    top1: float
    top5: float
    pixel1_ms: float | None = None  # V2 README: latency on one large core of a Pixel 1


V1_SOURCE = (
    "tensorflow/models research/slim/nets/mobilenet_v1.md, float checkpoints mobilenet_v1_2018_02_22 "
    "(commit 10cf1c0adfc8a7adaa476bf4ebb7e6c576526a5f)"
)
V2_SOURCE = (
    "tensorflow/models research/slim/nets/mobilenet/README.md "
    "(commit 0ba83cf0211401a8505505276c59418f15338d31)"
)


def _v1(alpha: str, res: int, madds: str, params: str, top1: float, top5: float) -> CheckpointResult:
    model = ModelConfig(family="v1", alpha=float(alpha), resolution=res).name
    return CheckpointResult(model, f"MobileNet_v1_{alpha}_{res}", madds, params, top1, top5)


V1_CHECKPOINTS: tuple[CheckpointResult, ...] = (
    _v1("1.0", 224, "569", "4.24", 70.9, 89.9),
    _v1("1.0", 192, "418", "4.24", 70.0, 89.2),
    _v1("1.0", 160, "291", "4.24", 68.0, 87.7),
    _v1("1.0", 128, "186", "4.24", 65.2, 85.8),
    _v1("0.75", 224, "317", "2.59", 68.4, 88.2),
    _v1("0.75", 192, "233", "2.59", 67.2, 87.3),
    _v1("0.75", 160, "162", "2.59", 65.3, 86.0),
    _v1("0.75", 128, "104", "2.59", 62.1, 83.9),
    _v1("0.50", 224, "150", "1.34", 63.3, 84.9),
    _v1("0.50", 192, "110", "1.34", 61.7, 83.6),
    _v1("0.50", 160, "77", "1.34", 59.1, 81.9),
    _v1("0.50", 128, "49", "1.34", 56.3, 79.4),
    _v1("0.25", 224, "41", "0.47", 49.8, 74.2),
    _v1("0.25", 192, "34", "0.47", 47.7, 72.3),
    _v1("0.25", 160, "21", "0.47", 45.5, 70.3),
    _v1("0.25", 128, "14", "0.47", 41.5, 66.3),
)


def _v2(alpha: str, res: int, madds: str, params: str, top1: float, top5: float, ms: float) -> CheckpointResult:
    model = ModelConfig(family="v2", alpha=float(alpha), resolution=res).name
    return CheckpointResult(model, f"mobilenet_v2_{alpha}_{res}", madds, params, top1, top5, ms)


V2_CHECKPOINTS: tuple[CheckpointResult, ...] = (
    _v2("1.4", 224, "582", "6.06", 75.0, 92.5, 138.0),
    _v2("1.3", 224, "509", "5.34", 74.4, 92.1, 123.0),
    _v2("1.0", 224, "300", "3.47", 71.8, 91.0, 73.8),
    _v2("1.0", 192, "221", "3.47", 70.7, 90.1, 55.1),
    _v2("1.0", 160, "154", "3.47", 68.8, 89.0, 40.2),
    _v2("1.0", 128, "99", "3.47", 65.3, 86.9, 27.6),
    _v2("1.0", 96, "56", "3.47", 60.3, 83.2, 17.6),
    _v2("0.75", 224, "209", "2.61", 69.8, 89.6, 55.8),
    _v2("0.75", 192, "153", "2.61", 68.7, 88.9, 41.6),
    _v2("0.75", 160, "107", "2.61", 66.4, 87.3, 30.4),
    _v2("0.75", 128, "69", "2.61", 63.2, 85.3, 21.9),
    _v2("0.75", 96, "39", "2.61", 58.8, 81.6, 14.2),
    _v2("0.5", 224, "97", "1.95", 65.4, 86.4, 28.7),
    _v2("0.5", 192, "71", "1.95", 63.9, 85.4, 21.1),
    _v2("0.5", 160, "50", "1.95", 61.0, 83.2, 14.9),
    _v2("0.5", 128, "32", "1.95", 57.7, 80.8, 9.9),
    _v2("0.5", 96, "18", "1.95", 51.2, 75.8, 6.4),
    _v2("0.35", 224, "59", "1.66", 60.3, 82.9, 19.7),
    _v2("0.35", 192, "43", "1.66", 58.2, 81.2, 14.6),
    _v2("0.35", 160, "30", "1.66", 55.7, 79.1, 10.5),
    _v2("0.35", 128, "20", "1.66", 50.8, 75.0, 6.9),
    _v2("0.35", 96, "11", "1.66", 45.5, 70.4, 4.5),
)

CHECKPOINTS = {"v1": V1_CHECKPOINTS, "v2": V2_CHECKPOINTS}
SOURCES = {"v1": V1_SOURCE, "v2": V2_SOURCE}
