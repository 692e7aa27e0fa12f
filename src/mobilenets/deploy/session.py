"""Opening a session: any weights we load, an exported file or a model object, in a chosen runtime."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch

from ..weights import load_model
from ..weights.published import cache_dir, sha256_file
from .onnx import export_onnx
from .runtimes import OnnxSession, TorchSession

RUNTIMES = ("torch", "onnxruntime")


def _onnx_cache_path(weights: Path) -> Path:
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
    model = load_model(weights)
    if runtime == "torch":
        return TorchSession(model, device, threads)
    cached = _onnx_cache_path(Path(src))
    if not cached.exists():
        export_onnx(model, cached, check=False)
    session = OnnxSession(cached, threads)
    session.config = model.config
    return session
