"""Inference runtimes as sessions: the fastest correct PyTorch eager path, and ONNX Runtime.

Every session takes NCHW float32 batches already preprocessed and returns logits, so ``predict``
and ``bench`` can run any of our weights or exported files through any runtime
(:func:`mobilenets.deploy.session.open_session` picks and opens one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import ModelConfig, fold_batchnorm
from ..utils.device import cpu_threads, pick_device
from .artifact import META_KEY


class TorchSession:
    """Eval mode, BatchNorm folded, channels-last, ``inference_mode``, all cores."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        torch.set_num_threads(threads or cpu_threads())
        self.device = pick_device(device)
        self.source = model
        self.model = fold_batchnorm(model).to(self.device).to(memory_format=torch.channels_last).eval()
        self.meta = getattr(model, "weights_meta", {}) or {}
        self.config = model.config

    @torch.inference_mode()
    def run(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        t = torch.as_tensor(x).to(self.device).contiguous(memory_format=torch.channels_last)
        return self.model(t).float().cpu().numpy()


class OnnxSession:
    """ONNX Runtime with all graph optimizations; CUDA when available, else CPU."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self.input = self.session.get_inputs()[0].name
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta: dict[str, Any] = json.loads(props[META_KEY]) if META_KEY in props else {}
        self.path = Path(path)
        self.config: ModelConfig | None = None

    def run(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        arr = x.numpy() if isinstance(x, torch.Tensor) else x
        return self.session.run(None, {self.input: np.ascontiguousarray(arr, dtype=np.float32)})[0]
