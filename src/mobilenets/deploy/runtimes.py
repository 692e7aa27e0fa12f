"""Inference runtimes as sessions: the fastest correct PyTorch eager path, and ONNX Runtime.

Every session takes NCHW float32 batches already preprocessed and returns a classifier's logits,
or a detector's four outputs (boxes, scores, labels, count: :class:`DetectionPipeline`), so
``predict`` and ``bench`` can run any of our weights or exported files through any runtime
(:func:`mobilenets.deploy.session.open_session` picks and opens one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import fold_batchnorm
from ..tasks import TaskConfig
from ..tasks.detection.model import SSD, DetectionPipeline
from ..utils.device import cpu_threads, pick_device
from .artifact import META_KEY

Outputs = np.ndarray | tuple[np.ndarray, ...]


class TorchSession:
    """Eval mode, BatchNorm folded, channels-last, ``inference_mode``, all cores."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        torch.set_num_threads(threads or cpu_threads())
        self.device = pick_device(device)
        self.source = model
        self.model = fold_batchnorm(model).to(self.device).to(memory_format=torch.channels_last).eval()
        self.meta = getattr(model, "weights_meta", {}) or {}
        self.config: TaskConfig | None = model.config
        self._pipelines: dict[tuple[int, int], DetectionPipeline] = {}

    @torch.inference_mode()
    def run(self, x: np.ndarray | torch.Tensor) -> Outputs:
        t = torch.as_tensor(x).to(self.device).contiguous(memory_format=torch.channels_last)
        if not isinstance(self.model, SSD):
            return self.model(t).float().cpu().numpy()
        size = (int(t.shape[-2]), int(t.shape[-1]))
        if size not in self._pipelines:
            self._pipelines[size] = DetectionPipeline(self.model, size).to(self.device)
        return tuple(o.cpu().numpy() for o in self._pipelines[size](t))


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
        self.config: TaskConfig | None = None

    def run(self, x: np.ndarray | torch.Tensor) -> Outputs:
        arr = x.numpy() if isinstance(x, torch.Tensor) else x
        outs = self.session.run(None, {self.input: np.ascontiguousarray(arr, dtype=np.float32)})
        return outs[0] if len(outs) == 1 else tuple(outs)
