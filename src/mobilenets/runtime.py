"""Inference sessions: the fastest correct PyTorch eager path, and ONNX Runtime.

Both take NCHW float32 batches already preprocessed and return logits, so ``predict`` and
``bench`` can run any of our weights or exported files through either runtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import cpu_threads, pick_device

RUNTIMES = ("torch", "onnxruntime")


class TorchSession:
    """Eval mode, BatchNorm folded, channels-last, ``inference_mode``, all cores."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        from .export import fold_batchnorm

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
        self.meta: dict[str, Any] = json.loads(props["mobilenets"]) if "mobilenets" in props else {}
        self.path = Path(path)
        self.config = None

    def run(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        arr = x.numpy() if isinstance(x, torch.Tensor) else x
        return self.session.run(None, {self.input: np.ascontiguousarray(arr, dtype=np.float32)})[0]


def _onnx_cache_path(weights: Path) -> Path:
    from .weights.hub import cache_dir, sha256_file

    digest = sha256_file(weights) if weights.is_file() else hashlib.sha256(str(weights).encode()).hexdigest()
    return cache_dir() / "onnx" / f"{weights.stem}-{digest[:16]}.onnx"


def open_session(weights: str | Path | torch.nn.Module, runtime: str = "torch", device: str = "cpu",
                 threads: int | None = None) -> TorchSession | OnnxSession:
    """A session for weights (any format we load), an exported ``.onnx``, or a model object.

    With ``runtime="onnxruntime"`` our weights are exported to ONNX once (cached by content hash).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    if isinstance(weights, torch.nn.Module):
        if runtime == "torch":
            return TorchSession(weights, device, threads)
        import tempfile

        from .export import export_onnx

        with tempfile.TemporaryDirectory() as d:  # ORT reads the file when the session is created
            export_onnx(weights, Path(d) / "model.onnx", check=False)
            session = OnnxSession(Path(d) / "model.onnx", threads)
        session.config = getattr(weights, "config", None)
        return session
    src = str(weights)
    if src.endswith(".onnx"):
        if runtime != "onnxruntime":
            raise ValueError(f"{src} is an ONNX file: use --runtime onnxruntime")
        if not Path(src).exists():
            raise FileNotFoundError(f"ONNX file not found: {src}")
        return OnnxSession(src, threads)
    from .weights import load_model

    model = load_model(weights)
    if runtime == "torch":
        return TorchSession(model, device, threads)
    from .export import export_onnx

    cached = _onnx_cache_path(Path(src))
    if not cached.exists():
        export_onnx(model, cached, check=False)
    session = OnnxSession(cached, threads)
    session.config = model.config
    return session
