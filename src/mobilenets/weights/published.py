"""The published MobileNet weights users know, as typed self-describing entries, and their download.

Each entry says where the file is, how to check it (sha256, or torchvision's hash prefix in the
file name), how to preprocess for it, and what ImageNet accuracy its publisher reports. Params and
MAdds come from our cost model (``entry.cost``), so they cannot disagree with the architecture.
Downloads go to a cache folder (``$MOBILENETS_CACHE`` or ``~/.cache/mobilenets``), are verified, and
fail with a clear message when the machine is offline.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import os
import shutil
import tarfile
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from torch.hub import download_url_to_file

from ..analysis import Profile, profile
from ..analysis.reported import V1_CHECKPOINTS, V2_CHECKPOINTS
from ..models import ModelConfig, parse_name
from ..models.spec import IMAGENET_MEAN, IMAGENET_STD, format_alpha
from .native import WeightsError

INCEPTION = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PublishedWeights:
    id: str
    model: str  # our model name
    url: str
    format: str  # pth | safetensors | h5 | tflite | tgz
    source: str  # torchvision | timm | keras | tflite
    num_classes: int
    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    resize: str = "shorter"
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str = ""
    sha256: str | None = None
    hash_prefix: str | None = None  # torchvision file names carry the first hex digits of the sha256
    member: str | None = None  # file inside a .tgz archive
    license: str = ""
    notes: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1] if self.source != "timm" else f"{self.id.split('/', 1)[1]}.safetensors"

    @property
    def preprocessing(self) -> dict[str, object]:
        return {"input_size": self.input_size, "crop_pct": self.crop_pct, "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation, "resize": self.resize}

    @property
    def cost(self) -> Profile:
        return profile(self.model, num_classes=self.num_classes)


def _tv(tag: str, file: str, top1: float, top5: float, resize: int) -> PublishedWeights:
    return PublishedWeights(
        f"torchvision/mobilenet_v2.{tag}", "1.0-MobileNetV2-224", f"https://download.pytorch.org/models/{file}", "pth",
        "torchvision", 1000, 224, 224 / resize, IMAGENET_MEAN, IMAGENET_STD, top1=top1, top5=top5,
        accuracy_source="torchvision weights meta (ImageNet-1K val)", hash_prefix=file.split("-")[1].split(".")[0],
        license="BSD-3-Clause")


def _timm(tag: str, model: str, top1: float, top5: float, mean: tuple, std: tuple) -> PublishedWeights:
    return PublishedWeights(
        f"timm/{tag}", model, f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors", "safetensors",
        "timm", 1000, 224, 0.875, mean, std, "bicubic", top1=top1, top5=top5,
        accuracy_source="timm results/results-imagenet.csv", license="Apache-2.0")


_KERAS_V1_ALPHA = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


def _keras(cfg: ModelConfig, top1: float | None, top5: float | None) -> PublishedWeights:
    a, res = format_alpha(cfg.alpha), cfg.resolution
    if cfg.family == "v1":
        file = f"mobilenet_{_KERAS_V1_ALPHA[cfg.alpha]}_{res}_tf.h5"
        url = f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/{file}"
    else:
        file = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{a}_{res}.h5"
        url = f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{file}"
    return PublishedWeights(
        f"keras/{file.removesuffix('.h5')}", cfg.name, url, "h5", "keras", 1000, res, 1.0, INCEPTION, INCEPTION,
        resize="squash", top1=top1, top5=top5,
        accuracy_source="converted from the TF-slim checkpoint (TF table)", license="Apache-2.0")


def _tflite(ck_model: str, tf_name: str, url: str, member: str, top1: float, top5: float,
            quant: bool) -> PublishedWeights:
    res = parse_name(ck_model).resolution
    return PublishedWeights(
        f"tflite/{member.removesuffix('.tflite')}", ck_model, url, "tgz", "tflite", 1001, res, 1.0, INCEPTION,
        INCEPTION, resize="squash", top1=top1, top5=top5, member=member,
        accuracy_source=f"tensorflow/models checkpoint table ({tf_name}{', TFLite-measured' if quant else ''})",
        license="Apache-2.0", tags=("quantized",) if quant else ())


# TF V1 quantized checkpoints (2018_08_02, TFLite-measured top-1/top-5), paper-facts section 6b.
_V1_QUANT = {
    "1.0_224": (70.1, 88.9), "1.0_192": (69.2, 88.3), "1.0_160": (67.2, 86.7), "1.0_128": (63.4, 84.2),
    "0.75_224": (66.8, 87.0), "0.75_192": (66.1, 86.4), "0.75_160": (62.3, 83.8), "0.75_128": (55.8, 78.8),
    "0.5_224": (60.7, 83.2), "0.5_192": (60.0, 82.2), "0.5_160": (57.7, 80.4), "0.5_128": (54.5, 77.7),
    "0.25_224": (48.0, 72.8), "0.25_192": (46.0, 71.2), "0.25_160": (43.4, 68.5), "0.25_128": (39.5, 64.4),
}


def _build() -> dict[str, PublishedWeights]:
    entries = [
        _tv("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", 71.878, 90.286, 256),
        _tv("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822, 232),
        _timm("mobilenetv1_100.ra4_e3600_r224_in1k", "1.0-MobileNet-224", 75.388, 92.310, INCEPTION, INCEPTION),
        _timm("mobilenetv2_100.ra_in1k", "1.0-MobileNetV2-224", 72.910, 91.000, IMAGENET_MEAN, IMAGENET_STD),
        _timm("mobilenetv2_140.ra_in1k", "1.4-MobileNetV2-224", 76.528, 93.008, IMAGENET_MEAN, IMAGENET_STD),
        _timm("mobilenetv2_050.lamb_in1k", "0.5-MobileNetV2-224", 65.928, 86.114, IMAGENET_MEAN, IMAGENET_STD),
    ]
    for ck in V1_CHECKPOINTS:
        cfg = parse_name(ck.model)
        key = f"{format_alpha(cfg.alpha)}_{cfg.resolution}"
        base = "https://storage.googleapis.com/download.tensorflow.org/models"
        entries.append(_tflite(ck.model, ck.tf_name, f"{base}/mobilenet_v1_2018_02_22/mobilenet_v1_{key}.tgz",
                               f"mobilenet_v1_{key}.tflite", ck.top1, ck.top5, False))
        q1, q5 = _V1_QUANT[key]
        entries.append(_tflite(ck.model, ck.tf_name + "_quant",
                               f"{base}/mobilenet_v1_2018_08_02/mobilenet_v1_{key}_quant.tgz",
                               f"mobilenet_v1_{key}_quant.tflite", q1, q5, True))
        entries.append(_keras(cfg, ck.top1, ck.top5))
    for ck in V2_CHECKPOINTS:
        cfg = parse_name(ck.model)
        key = f"{format_alpha(cfg.alpha)}_{cfg.resolution}"
        entries.append(_tflite(ck.model, ck.tf_name, f"https://storage.googleapis.com/mobilenet_v2/checkpoints/"
                               f"mobilenet_v2_{key}.tgz", f"mobilenet_v2_{key}.tflite", ck.top1, ck.top5, False))
        entries.append(_keras(cfg, ck.top1, ck.top5))
    return {e.id: e for e in entries}


PUBLISHED: dict[str, PublishedWeights] = _build()


def list_weights(pattern: str | None = None) -> list[PublishedWeights]:
    return [e for e in PUBLISHED.values() if pattern is None or fnmatch.fnmatch(e.id.lower(), pattern.lower())]


def get_weights(weights_id: str) -> PublishedWeights:
    if weights_id in PUBLISHED:
        return PUBLISHED[weights_id]
    close = difflib.get_close_matches(weights_id, list(PUBLISHED), n=5, cutoff=0.4)
    raise ValueError(f"unknown weights {weights_id!r}" + (f"; closest: {', '.join(close)}" if close else "")
                     + "; `mobilenets weights` lists them")


def cache_dir() -> Path:
    return Path(os.environ.get("MOBILENETS_CACHE", Path.home() / ".cache" / "mobilenets"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(entry: PublishedWeights, path: Path) -> None:
    """Check a file against the entry's sha256 or hash prefix; raise WeightsError on mismatch."""
    if entry.sha256 is None and entry.hash_prefix is None:
        return
    digest = sha256_file(path)
    expected = entry.sha256 or entry.hash_prefix or ""
    if not digest.startswith(expected):
        raise WeightsError(f"{path}: sha256 {digest[:16]}... does not match {entry.id} (expected {expected[:16]}...); "
                           "the file is corrupt or not the published one")


def fetch(entry: PublishedWeights, cache: Path | None = None, progress: bool = True) -> Path:
    """The local path of an entry's weights file, downloading and verifying it on first use."""
    cache = cache or cache_dir()
    dst = cache / entry.source / entry.filename
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_url_to_file(entry.url, str(dst), progress=progress)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise WeightsError(
                f"cannot download {entry.id} from {entry.url} ({e}). If this machine is offline, download the "
                f"file elsewhere and put it at {dst} (or pass the file's path instead of the id)") from None
    verify(entry, dst)
    if entry.format == "tgz":
        return _extract(dst, entry.member or "")
    return dst


def _extract(archive: Path, member: str) -> Path:
    out = archive.with_name(member)
    if out.exists():
        return out
    try:
        with tarfile.open(archive) as tar:
            names = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == member]
            if not names:
                raise WeightsError(f"{archive}: no {member} inside the archive")
            src = tar.extractfile(names[0])
            assert src is not None
            tmp = out.with_suffix(".part")
            with open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, out)
    except tarfile.TarError as e:
        raise WeightsError(f"{archive}: not a readable .tgz archive ({e})") from None
    return out
