"""What a quantized TFLite file's integer arithmetic needs, by our module names: the activation
grids (:func:`activation_grids`) and the integer kernels' grids and scales (:func:`integer_kernels`)
that :mod:`mobilenets.models.fake_quant` emulates."""

from __future__ import annotations

from typing import Any

from ..tasks import TaskConfig, kind_of
from .tflite_config import layers
from .tflite_file import TFLiteModel


def activation_grids(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, list[list[float]]]:
    """The quantized file's output grids by our module names, for
    :func:`~mobilenets.models.fake_quant.emulate_activation_quantization`: every conv layer, the
    residual blocks (TFLite's ADD), the pool, and a detector's concatenated outputs and scores."""
    table = {layer.name: [c.output_grid] for layer, c in zip(layers(cfg), tfl.convs) if c.output_grid}
    if not table:
        return {}
    residual = kind_of(cfg).residual_blocks(cfg)
    if len(residual) == len(tfl.add_grids):
        table.update({name: [grid] for name, grid in zip(residual, tfl.add_grids)})
    pool = kind_of(cfg).pool_layer
    if tfl.pool_grid and pool:
        table[pool] = [tfl.pool_grid]
    output = kind_of(cfg).output_layer(cfg)
    if output in table:
        table[""] = table[output]  # TFLite upsamples the uint8 logits: ties go to ARG_MAX's first class
    g = tfl.output_grids
    if "codes" in g and "logits" in g:
        table[""] = [g["codes"], g["logits"]]  # SSD.forward returns both, concatenated like TFLite's CONCATENATION
    if "scores" in g:
        table["score"] = [g["scores"]]
    return table


def integer_kernels(tfl: TFLiteModel, cfg: TaskConfig) -> dict[str, dict[str, list[Any]]]:
    """What :func:`~mobilenets.models.fake_quant.emulate_integer_kernels` needs to compute a uint8
    file's convs and residual adds bit for bit: each conv's input grid, weight scales and output grid,
    each add's two input grids and output grid, and DeepLab's image-pooling branch moved to the
    concatenation's grid (its QUANTIZE, identified by its input grid) ({} for a float file)."""
    convs = {layer.name: [c.input_grid, c.weight_scales, c.output_grid] for layer, c in zip(layers(cfg), tfl.convs)
             if layer.kind != "fc" and c.input_grid and c.output_grid and c.weight_scales}
    if not convs:
        return {}
    adds = {}
    residual = kind_of(cfg).residual_blocks(cfg)
    if len(residual) == len(tfl.add_grids):
        for name, grid in zip(residual, tfl.add_grids):
            first = next(v for k, v in convs.items() if k.startswith(f"{name}."))  # its input is the block's
            adds[name] = [first[0], convs[f"{name}.project"][2], grid]
    pool = convs.get("aspp.pool")  # DeepLab's image pooling
    to_concat = next((r for r in tfl.requantize_grids if pool and r[0] == pool[2]), None)
    return {"convs": convs, "adds": adds, "converts": {"aspp.pool": to_concat} if to_concat else {}}


