"""Google's TFLite MobileNets (float, uint8 quantization-aware, int8 per-channel) as our models:
the classifiers, the SSD detectors with their ``TFLite_Detection_PostProcess`` op, and the DeepLabv3
segmenters (output stride from the dilations of the depthwise convs, head from the conv names).

The file is read (:mod:`.tflite_file`), its architecture found (:mod:`.tflite_config`), and its
convolution ops' weights and biases are matched one-to-one with the layers of our spec. TFLite
folds BatchNorm into the convs; we keep the BN modules as identity statistics that carry the
folded bias (mean 0, var 1 - eps, gamma 1, beta = bias), so the architecture stays one model.
A quantized file's grids come along for emulation (:mod:`.tflite_quant`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models import ModelConfig
from ..tasks import TaskConfig, config_from_dict
from .native import WeightsError
from .tflite_config import infer_config, layers, matches, tflite_name_hint, torch_weight
from .tflite_file import TFLiteModel, read_tflite, tflite_metadata
from .tflite_quant import activation_grids, integer_kernels


def tflite_state_dict(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, torch.Tensor]:
    """Our state dict: BN as identity statistics carrying the folded biases; logit layers keep a bias."""
    if not matches(tfl.convs, cfg):
        raise WeightsError(f"the TFLite layers do not match {cfg.name}")
    eps = cfg.bn_eps if isinstance(cfg, ModelConfig) else cfg.backbone.bn_eps
    sd: dict[str, torch.Tensor] = {}
    for layer, conv in zip(layers(cfg), tfl.convs):
        w = torch_weight(conv)
        bias = torch.from_numpy(conv.bias) if conv.bias is not None else torch.zeros(w.shape[0])
        p = layer.name
        if layer.kind == "fc":
            sd[f"{p}.weight"], sd[f"{p}.bias"] = w.reshape(w.shape[0], -1), bias
            continue
        sd[f"{p}.conv.weight"] = w
        if not layer.bn:
            sd[f"{p}.conv.bias"] = bias
            continue
        sd[f"{p}.bn.weight"] = torch.ones(layer.out_ch)
        sd[f"{p}.bn.bias"] = bias
        sd[f"{p}.bn.running_mean"] = torch.zeros(layer.out_ch)
        sd[f"{p}.bn.running_var"] = torch.full((layer.out_ch,), 1.0 - eps)
        sd[f"{p}.bn.num_batches_tracked"] = torch.tensor(0)
    return sd


def _input_mapping(tfl: TFLiteModel, cfg: ModelConfig) -> tuple[list[float], list[float]]:
    """Mean and std (of [0, 1] pixels) that reproduce the file's input: a uint8 input means
    ``(pixel - zero_point) * scale`` - for scale 1/128 and zero point 128, mean = std = 128/255, not
    quite the float models' (pixel - 127.5) / 127.5."""
    scale, zero_point = tfl.input_quant
    if tfl.input_dtype != "uint8" or not scale:
        return list(cfg.mean), list(cfg.std)
    std = 1.0 / (255.0 * scale)
    return [zero_point / 255.0] * 3, [std] * 3


def load_tflite(paths: list[Path],
                model: str | None = None) -> tuple[TaskConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config, state dict and metadata from one TFLite file, or a body file followed by a head file.
    A file we exported carries its config, classes and preprocessing (:func:`tflite_metadata`)."""
    parts = [read_tflite(p) for p in paths]
    ours = tflite_metadata(paths[0]) if len(paths) == 1 else {}
    tfl = TFLiteModel([c for p in parts for c in p.convs], parts[0].input_size, parts[0].input_dtype,
                      parts[0].input_quant, any(p.quantized for p in parts), parts[0].postprocess, parts[0].anchors,
                      parts[0].anchor_step, [g for p in parts for g in p.add_grids],
                      next((p.pool_grid for p in parts if p.pool_grid), None), parts[0].output_grids,
                      parts[0].segmenter, parts[0].align_corners, [r for p in parts for r in p.requantize_grids])
    cfg = config_from_dict(ours["config"]) if "config" in ours else \
        infer_config(tfl, model or tflite_name_hint(paths[0]))
    mean, std = _input_mapping(tfl, cfg if isinstance(cfg, ModelConfig) else cfg.backbone)
    grids = activation_grids(tfl, cfg) if not ours else {}
    kernels = integer_kernels(tfl, cfg) if grids else {}
    meta: dict[str, Any] = {
        "source": {"format": "tflite", "files": [str(p) for p in paths], "quantized": tfl.quantized,
                   "input_dtype": tfl.input_dtype, "input_quantization": list(tfl.input_quant),
                   **({"postprocess": tfl.postprocess} if tfl.postprocess is not None else {}),
                   **({"activation_quantization": grids, "integer_kernels": kernels} if grids else {})},
        # Google's models resize the whole image to the input size (no crop), bilinear, [-1, 1]
        "preprocessing": {"input_size": tfl.input_size, "crop_pct": 1.0, "mean": mean, "std": std,
                          "interpolation": "bilinear", "resize": "squash"},
    }
    if ours:
        meta.update(preprocessing=ours["preprocessing"], classes=ours.get("classes"))
    return cfg, tflite_state_dict(tfl, cfg), meta
