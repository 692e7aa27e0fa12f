"""Google's runtime as the reference our models and exports are checked against (tests and
benchmarks only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_litert_outputs(path: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """Google's runtime on one NHWC input (float, or uint8 for quantized files): every output of the
    file, dequantized, batch dimension dropped - the reference our models are checked against."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    outs = []
    for o in it.get_output_details():
        out = it.get_tensor(o["index"])[0].astype(np.float32)
        scale, zp = o["quantization"]
        outs.append((out - zp) * scale if scale else out)
    return outs


def run_litert(path: str | Path, x: np.ndarray) -> np.ndarray:
    """The first output of :func:`run_litert_outputs` (a classifier's class probabilities)."""
    return run_litert_outputs(path, x)[0]
