"""int8 ONNX: static post-training quantization with ONNX Runtime (QDQ, per-channel weights),
calibrated on real images (or, labelled as such, synthetic ones), after bias correction."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from ..data import UnreadableImage, find_images, load_image
from ..models import fold_batchnorm
from ..tasks import kind_of, preprocess_of
from ..utils.fsutil import atomic_path
from .artifact import ExportResult, export_metadata, export_size, inference_module
from .bias_correction import bias_correct
from .onnx import export_onnx
from .sessions import OnnxSession

#: Calibration samples to aim for, and the most images calibrated on: each activation's range is its min
#: and max over them, and images past a few hundred only widen it with rarer extremes (facemask's int8
#: detector: mAP@0.5 0.498 from 508 images, 0.504-0.506 from 200 of them, against fp32 0.519).
CALIBRATION_SAMPLES = 200


def synthetic_calibration(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images in the model's input range: a stand-in when the user gives no images.

    Clearly worse than real images; the CLI labels results calibrated this way as synthetic.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, max(size // 16, 2), max(size // 16, 2), generator=g)
    imgs = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    imgs = imgs + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return [((imgs[i].clamp(0, 1) - 0.5) / 0.5).numpy().astype(np.float32) for i in range(n)]


def calibration_images(files: Sequence[Path], model: nn.Module, per_image: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Preprocessed images (the model's eval transform); ``per_image`` > 1 adds random crops of each."""
    from torchvision.transforms import v2  # seconds to import: only when calibrating

    pre = preprocess_of(model)
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


def calibration_sets(model: nn.Module, calibrate: str | Path | Sequence[Path] | None, size: int,
                     held_out: float = 0.25, per_image: int | None = None, seed: int = 0
                     ) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Calibration samples, held-out samples (a share ``held_out`` of the images, to measure int8/fp32
    agreement on) and a label saying what they are; without images, labelled synthetic ones.

    ``per_image`` (default: enough random crops of each image for ~``CALIBRATION_SAMPLES`` samples,
    at most 8) - a few photos still cover the ranges that many would; of more images than that, a
    seeded random ``CALIBRATION_SAMPLES`` are calibrated on, and at most as many held out.
    """
    if calibrate is None:
        label = "SYNTHETIC (no --calibrate images given: smooth random images; pass real images for a real int8 model)"
        return synthetic_calibration(64, size, seed), synthetic_calibration(32, size, seed + 1), label
    listed = not isinstance(calibrate, (str, Path))
    files = list(calibrate) if listed else find_images([calibrate])  # type: ignore[arg-type, list-item]
    if not files:
        raise ValueError(f"no images found in {calibrate} for calibration")
    order = np.random.default_rng(seed).permutation(len(files))
    n_hold = max(1, int(round(held_out * len(files)))) if held_out > 0 and len(files) > 1 else 0
    n_hold = min(n_hold, CALIBRATION_SAMPLES)  # a training split of 100k photos: 200 held out, not 25k in memory
    hold_files = [files[i] for i in sorted(order[:n_hold])]
    cal_files = [files[i] for i in sorted(order[n_hold:n_hold + CALIBRATION_SAMPLES])]
    of = f"{len(cal_files)} of {len(files) - n_hold}" if len(files) - n_hold > len(cal_files) else f"{len(cal_files)}"
    if per_image is None:
        per_image = min(8, max(1, round(CALIBRATION_SAMPLES / max(len(cal_files), 1))))
    cal = calibration_images(cal_files, model, per_image, seed)
    hold = calibration_images(hold_files, model, per_image, seed + 1)
    if not cal:
        raise ValueError("no readable calibration images")
    crops = f" (x{per_image} crops)" if per_image > 1 else ""
    source = f"the training split ({os.path.commonpath([str(f) for f in files])})" if listed else str(calibrate)
    return cal, hold, f"{of} images from {source}{crops}"


def _reader(samples: Sequence[np.ndarray], input_name: str, batch: int = 16) -> Any:
    """The calibration samples in batches (the export has a dynamic batch; a Faster R-CNN's is 1): a few
    ORT runs, not one per image."""
    from onnxruntime.quantization import CalibrationDataReader

    batches = [np.stack(samples[i: i + batch]).astype(np.float32) for i in range(0, len(samples), batch)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self) -> None:
            self._it = iter(batches)

    return Reader()


def int8_progress(enabled: bool, steps: int) -> Any:
    """A progress bar over an int8 export's steps (tens of seconds); ``bar.set_postfix_str`` names the step."""
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="int8 export", unit="step", disable=not enabled, leave=False)


def _flush_every(samples: int, batch: int = 16) -> int:
    """How many calibration batches ORT keeps before reducing them to ranges (not every intermediate
    output is kept: 1200 samples of 1.0-MobileNetV2-224 took 9 GB). Never a divisor of the batch
    count: ORT 1.32 raises "No data is collected" when the last batch ends a reduction."""
    batches = -(-samples // batch)
    return next(k for k in range(4, max(batches, 4) + 2) if batches % k or k > batches)


def export_onnx_int8(model: nn.Module, path: str | Path, calibrate: str | Path | Sequence[Path] | None = None,
                     input_size: int | None = None, held_out: float = 0.25, per_image: int | None = None,
                     seed: int = 0, bias_correction: bool = True, progress: bool = False) -> ExportResult:
    """Static post-training int8 quantization with ONNX Runtime (QDQ, per-channel weights).

    Activations are uint8 per tensor, calibrated (MinMax) on ``calibrate`` images - a share
    ``held_out`` of them is kept out of calibration to measure fp32/int8 top-1 agreement. ReLU6
    is kept: its [0, 6] bound becomes the quantization range of the conv output it follows
    (ORT removes the Clip only because the range already clips). The classifier and the pooled
    features stay fp32: uint8 logits would have too coarse a resolution to rank 1000 classes.
    A detector quantizes its convolutions only: box decoding, scores and NMS stay fp32.
    """
    import onnx  # heavy: imported on first use
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = export_size(model, input_size)
    bar = int8_progress(progress, 5)
    bar.set_postfix_str("reading calibration images")
    cal, hold, label = calibration_sets(model, calibrate, size, held_out, per_image, seed)
    path = Path(path)
    with tempfile.TemporaryDirectory() as d:
        fp32 = Path(d) / "fp32.onnx"
        pre = Path(d) / "pre.onnx"
        bar.update()
        bar.set_postfix_str("bias correction")
        to_export = bias_correct(fold_batchnorm(model), torch.from_numpy(np.stack(cal))) if bias_correction else model
        bar.update()
        bar.set_postfix_str("ONNX export")
        export_onnx(to_export, fp32, input_size, check=False)
        bar.update()
        bar.set_postfix_str("calibration and quantization")
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        batch = 1 if kind_of(model).onnx_exporter == "torchscript" else 16  # a graph traced for one image
        keep_float = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul", "ReduceMean", "GlobalAveragePool",
                                                                   "Reshape", "Flatten")]
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(pre), str(tmp), _reader(cal, graph.input[0].name, batch), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
                            extra_options={"CalibMaxIntermediateOutputs": _flush_every(len(cal), batch)},
                            op_types_to_quantize=list(ops) if (ops := kind_of(model).int8_ops) else None)
            proto = onnx.load(str(tmp))
            for k, v in export_metadata(model).items():
                e = proto.metadata_props.add()
                e.key, e.value = k, v
            onnx.save(proto, str(tmp))
    res = ExportResult(str(path), "onnx-int8", calibration=label,
                       details=int8_details(model, cal, hold, bias_correction))
    bar.update()
    bar.set_postfix_str("held-out agreement")
    if hold:
        res.agreement = held_out_agreement(model, size, hold, OnnxSession(path).run)
    bar.update()
    bar.close()
    return res


def int8_details(model: nn.Module, cal: list[np.ndarray], hold: list[np.ndarray], bias_correction: bool
                 ) -> dict[str, Any]:
    what = kind_of(model).agreement_of
    return {"calibration_images": len(cal), "held_out": len(hold), "bias_correction": bias_correction,
            "agreement_of": what}


def held_out_agreement(model: nn.Module, size: int, hold: list[np.ndarray],
                       run: Callable[[np.ndarray], Any]) -> float:
    """:func:`agreement` of an int8 export (``run``) with the float PyTorch model on held-out samples."""
    module, _ = inference_module(model, size)
    x = np.stack(hold)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x))
    return agreement(tuple(r.numpy() for r in ref) if isinstance(ref, tuple) else ref.numpy(), run(x))


def agreement(fp32: Any, int8: Any) -> float:
    """Share of the held-out images on which int8 gives fp32's answer: a classifier's top-1 class
    (a segmenter's: of every pixel), a detector's best detection (same class, box IoU >= 0.5; or no
    detection for both)."""
    if isinstance(fp32, np.ndarray):
        return float((fp32.argmax(1) == int8.argmax(1)).mean())
    (b32, _, l32, n32), (b8, _, l8, n8) = fp32, int8
    def best_kept(i: int) -> bool:
        if n32[i] == 0 or n8[i] == 0:
            return n32[i] == n8[i]
        iou = float(box_iou(torch.from_numpy(b32[i, :1]), torch.from_numpy(b8[i, :1])))
        return bool(l32[i, 0] == l8[i, 0] and iou >= 0.5)

    same = [best_kept(i) for i in range(len(n32))]
    return float(np.mean(same))
