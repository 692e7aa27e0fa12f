"""Export for deployment: ONNX (fp32, int8 QDQ), TorchScript and torch.export (.pt2).

Every export is checked against the PyTorch model right after it is written, and the check's
result is returned (and printed by the CLI).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .fsutil import atomic_path
from .model import MobileNet
from .spec import check_input_size

FORMATS = ("onnx", "onnx-int8", "torchscript", "pt2")
ONNX_OPSET = 18
META_KEY = "mobilenets"


def fold_batchnorm(model: MobileNet) -> MobileNet:
    """A copy for inference with every BatchNorm folded into its conv (``conv.bias`` carries it)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from .layers import ConvBNAct

    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            dtype = m.conv.weight.dtype  # fold in float64: the folded weights round once, not twice
            m.conv = fuse_conv_bn_eval(m.conv.double(), m.bn.double()).to(dtype)
            m.bn = nn.Identity()
    return folded


@dataclass
class ExportResult:
    path: str
    format: str
    max_abs_diff: float | None = None  # exported vs PyTorch on a check batch
    tolerance: float | None = None
    agreement: float | None = None  # int8: top-1 agreement with fp32 on held-out images
    calibration: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff is None or self.tolerance is None or self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        s = f"wrote {self.path} ({self.format})"
        if self.max_abs_diff is not None:
            s += f"; check vs PyTorch: max abs diff {self.max_abs_diff:.2e} ({'ok' if self.ok else 'FAILED'}, " \
                 f"tolerance {self.tolerance:g})"
        if self.agreement is not None:
            s += f"; int8/fp32 top-1 agreement {100 * self.agreement:.1f}% on {self.details.get('held_out', 0)} " \
                 f"held-out images"
        if self.calibration:
            s += f"; calibration: {self.calibration}"
        return s


def _meta(model: MobileNet) -> dict[str, str]:
    m = getattr(model, "weights_meta", {}) or {}
    from .data import Preprocess

    pre = m.get("preprocessing") or Preprocess.for_config(model.config).to_dict()
    return {META_KEY: json.dumps({"model": model.config.name, "classes": m.get("classes"), "preprocessing": pre,
                                  "num_classes": model.config.num_classes})}


def _check_input(model: MobileNet, input_size: int | None, batch: int = 2) -> torch.Tensor:
    size = input_size or model.config.resolution
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, model.config.in_chans, size, size, generator=g)


def export_onnx(model: MobileNet, path: str | Path, input_size: int | None = None, opset: int = ONNX_OPSET,
                check: bool = True) -> ExportResult:
    """ONNX with BN folded, a dynamic batch dimension, and our metadata (classes, preprocessing)."""
    import onnx

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; use >= 17")
    folded = fold_batchnorm(model)
    x = _check_input(model, input_size, batch=1)
    path = Path(path)
    # the exporter prints progress lines on stdout; keep stdout for our own (JSON) output
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        tmp = Path(d) / "model.onnx"
        torch.onnx.export(folded, (x,), str(tmp), dynamo=True, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                          verbose=False, report=False)
        proto = onnx.load(str(tmp))
    for k, v in _meta(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "mobilenets"
    with atomic_path(path) as tmp_out:
        onnx.save(proto, str(tmp_out))
    res = ExportResult(str(path), "onnx")
    if check:
        res.max_abs_diff, res.tolerance = _check_onnx(model, path, input_size), 1e-4
    return res


def _check_onnx(model: MobileNet, path: Path, input_size: int | None) -> float:
    from .runtime import OnnxSession

    x = _check_input(model, input_size, batch=3)  # a batch size other than the export's: dynamic batch
    with torch.inference_mode():
        ref = model.eval()(x).numpy()
    out = OnnxSession(path).run(x.numpy())
    return float(np.abs(out - ref).max())


# ------------------------------------------------------------------------------ int8


def synthetic_calibration(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images in the model's input range: a stand-in when the user gives no images.

    Clearly worse than real images; the CLI labels results calibrated this way as synthetic.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, max(size // 16, 2), max(size // 16, 2), generator=g)
    imgs = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    imgs = imgs + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return [((imgs[i].clamp(0, 1) - 0.5) / 0.5).numpy().astype(np.float32) for i in range(n)]


def calibration_images(files: Sequence[Path], model: MobileNet, per_image: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Preprocessed images (the model's eval transform); ``per_image`` > 1 adds random crops of each."""
    from torchvision.transforms import v2

    from .data import Preprocess
    from .images import UnreadableImage, load_image

    meta = getattr(model, "weights_meta", {}) or {}
    pre = Preprocess.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else Preprocess.for_config(model.config)
    ev = pre.eval_transform()
    crop = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(pre.input_size, scale=(0.5, 1.0), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))])
    torch.manual_seed(seed)
    out = []
    for f in files:
        try:
            img = load_image(f)
        except UnreadableImage:
            continue
        out.append(ev(img).numpy())
        out += [crop(img).numpy() for _ in range(per_image - 1)]
    return out


def _reader(samples: Sequence[np.ndarray], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x[None].astype(np.float32)}

        def rewind(self) -> None:
            self._it = iter(samples)

    return Reader()


def export_onnx_int8(model: MobileNet, path: str | Path, calibrate: str | Path | None = None,
                     input_size: int | None = None, held_out: float = 0.25, per_image: int = 8,
                     seed: int = 0, bias_correction: bool = True) -> ExportResult:
    """Static post-training int8 quantization with ONNX Runtime (QDQ, per-channel weights).

    Activations are uint8 per tensor, calibrated (MinMax) on ``calibrate`` images - a share
    ``held_out`` of them is kept out of calibration to measure fp32/int8 top-1 agreement. ReLU6
    is kept: its [0, 6] bound becomes the quantization range of the conv output it follows
    (ORT removes the Clip only because the range already clips). The classifier and the pooled
    features stay fp32: uint8 logits would have too coarse a resolution to rank 1000 classes.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = input_size or model.config.resolution
    if calibrate is not None:
        from .images import find_images

        files = find_images([calibrate])
        if not files:
            raise ValueError(f"no images found in {calibrate} for calibration")
        order = np.random.default_rng(seed).permutation(len(files))
        n_hold = max(1, int(round(held_out * len(files)))) if held_out > 0 and len(files) > 1 else 0
        hold_files = [files[i] for i in sorted(order[:n_hold])]
        cal_files = [files[i] for i in sorted(order[n_hold:])]
        cal = calibration_images(cal_files, model, per_image, seed)
        hold = calibration_images(hold_files, model, per_image, seed + 1)
        label = f"{len(cal_files)} images from {calibrate} (x{per_image} crops)"
    else:
        cal = synthetic_calibration(64, size, seed)
        hold = synthetic_calibration(32, size, seed + 1)
        label = "SYNTHETIC (no --calibrate images given: smooth random images; pass real images for a real int8 model)"
    if not cal:
        raise ValueError("no readable calibration images")
    path = Path(path)
    with tempfile.TemporaryDirectory() as d:
        fp32 = Path(d) / "fp32.onnx"
        pre = Path(d) / "pre.onnx"
        export_onnx(model, fp32, input_size, check=False)
        to_quantize = fp32
        if bias_correction:
            from .quantize import bias_correct

            corrected = bias_correct(fold_batchnorm(model), torch.from_numpy(np.stack(cal)))
            to_quantize = Path(d) / "corrected.onnx"
            export_onnx(corrected, to_quantize, input_size, check=False)
        quant_pre_process(str(to_quantize), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        keep_float = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul", "ReduceMean", "GlobalAveragePool",
                                                                   "Reshape", "Flatten")]
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(pre), str(tmp), _reader(cal, graph.input[0].name), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
            proto = onnx.load(str(tmp))
            for k, v in _meta(model).items():
                e = proto.metadata_props.add()
                e.key, e.value = k, v
            onnx.save(proto, str(tmp))
        res = ExportResult(str(path), "onnx-int8", calibration=label,
                           details={"calibration_images": len(cal), "held_out": len(hold),
                                    "bias_correction": bias_correction})
        if hold:
            from .runtime import OnnxSession

            x = np.stack(hold)
            p32 = OnnxSession(fp32).run(x).argmax(1)
            p8 = OnnxSession(path).run(x).argmax(1)
            res.agreement = float((p32 == p8).mean())
    return res


# ------------------------------------------------------------------------------ TorchScript / torch.export


def export_torchscript(model: MobileNet, path: str | Path, input_size: int | None = None) -> ExportResult:
    folded = fold_batchnorm(model)
    x = _check_input(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(folded)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"mobilenets.json": _meta(model)[META_KEY]})
    loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        diff = float((loaded(x) - model.eval()(x)).abs().max())
    return ExportResult(str(path), "torchscript", diff, 1e-4)


def export_pt2(model: MobileNet, path: str | Path, input_size: int | None = None) -> ExportResult:
    folded = fold_batchnorm(model)
    x = _check_input(model, input_size)
    ep = torch.export.export(folded, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    with atomic_path(path) as tmp:
        torch.export.save(ep, str(tmp), extra_files={"mobilenets.json": _meta(model)[META_KEY]})
    loaded = torch.export.load(str(path)).module()
    with torch.inference_mode():
        diff = float((loaded(x) - model.eval()(x)).abs().max())
    return ExportResult(str(path), "pt2", diff, 1e-4)


def export(model: MobileNet, path: str | Path, format: str = "onnx", *, calibrate: str | Path | None = None,
           input_size: int | None = None) -> ExportResult:
    """Export ``model`` to ``path`` in ``format`` (onnx, onnx-int8, torchscript, pt2) and check it."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if input_size is not None:
        check_input_size(input_size)
    if format == "onnx":
        return export_onnx(model, path, input_size)
    if format == "onnx-int8":
        return export_onnx_int8(model, path, calibrate, input_size)
    if format == "torchscript":
        return export_torchscript(model, path, input_size)
    return export_pt2(model, path, input_size)
