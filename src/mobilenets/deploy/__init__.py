"""Deployment: exports checked against PyTorch (``export``: ``onnx``, ``quantize`` for int8 with
``bias_correction``, ``tflite``, ``torch_formats``; ``artifact`` is what they produce), runtimes as
sessions (``runtimes``: torch, ONNX Runtime, LiteRT; opened by ``session``, which also chooses the
fastest: ``auto``), latency measurement (``bench_inference``) and prediction (``predict``). A new runtime adds
a session class to ``runtimes`` and a name to ``session``."""

from .bench import BenchResult, bench_inference
from .export import FORMATS, export
from .predict import PredictResult, predict
from .runtime_choice import RUNTIMES, open_session

__all__ = ["FORMATS", "RUNTIMES", "BenchResult", "PredictResult", "bench_inference", "export", "open_session",
           "predict"]
