"""Opening a session: any weights we load, an exported file or a model object, in a chosen runtime -
or, with ``runtime="auto"``, in the runtime measured fastest for that model on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..tasks import TaskConfig
from ..tasks.detection.faster_rcnn import FasterRCNN
from ..utils.device import cpu_name, cpu_threads
from ..utils.fsutil import atomic_write_text
from ..utils.timing import time_fn
from ..weights import load_model
from ..weights.published import cache_dir
from .onnx import export_onnx
from .runtimes import ExecutorchSession, LitertSession, OnnxSession, TorchSession, executorch_installed

RUNTIMES = ("auto", "torch", "onnxruntime", "litert", "executorch")
FILE_RUNTIMES = {".onnx": "onnxruntime", ".tflite": "litert", ".pte": "executorch"}
Session = TorchSession | OnnxSession | LitertSession | ExecutorchSession


def measured_runtimes(model: torch.nn.Module | None = None) -> tuple[str, ...]:
    """What "auto" chooses among: every installed runtime (ExecuTorch is an optional extra) that runs
    ``model`` (a Faster R-CNN exports to ONNX only)."""
    if isinstance(model, FasterRCNN):
        return ("torch", "onnxruntime")
    return ("torch", "onnxruntime", "litert") + (("executorch",) if executorch_installed() else ())


def default_runtime(source: str | Path | None = None) -> str:
    """The CLI's default runtime: ``$MOBILENETS_RUNTIME`` if set (e.g. ``torch`` to skip measuring), else
    auto - and auto for a ``.onnx`` or ``.pte`` ``source``, which only its own runtime runs."""
    value = os.environ.get("MOBILENETS_RUNTIME", "auto")
    if value not in RUNTIMES:
        raise ValueError(f"MOBILENETS_RUNTIME={value!r} is not a runtime; valid: {', '.join(RUNTIMES)}")
    if source is not None and Path(str(source)).suffix in (".onnx", ".pte"):
        return "auto"
    return value


def _digest(model: torch.nn.Module) -> str:
    """Content hash of a model (config and weights): the key of its cached exports and timings."""
    h = hashlib.sha256(model.config.name.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_export(model: torch.nn.Module, runtime: str) -> Path:
    """Our export of ``model`` for ``runtime`` (ONNX, float TFLite or ExecuTorch), made once per content hash."""
    suffix = next(k for k, v in FILE_RUNTIMES.items() if v == runtime)[1:]
    path = cache_dir() / suffix / f"{model.config.name}-{_digest(model)}.{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if runtime == "onnxruntime":
            export_onnx(model, path, check=False)
        elif runtime == "litert":
            from .tflite import export_tflite  # litert-torch is heavy: only when a TFLite file is needed

            export_tflite(model, path)
        else:
            from .pte import export_pte  # so is ExecuTorch

            export_pte(model, path)
    return path


def _session(path: str | Path, runtime: str, threads: int | None) -> Session:
    kinds = {"onnxruntime": OnnxSession, "litert": LitertSession, "executorch": ExecutorchSession}
    return kinds[runtime](path, threads)


def _open_file(src: str, runtime: str, threads: int | None) -> Session | None:
    """An exported file in its own runtime (``auto``: the only one that runs it)."""
    kind = FILE_RUNTIMES.get(Path(src).suffix)
    if kind is None or (kind == "litert" and runtime == "torch"):
        return None  # weights (a TFLite file runs in torch through our loader)
    if runtime not in ("auto", kind):
        raise ValueError(f"{src} is a {Path(src).suffix} file: use --runtime {kind} (or auto)")
    if not Path(src).exists():
        raise FileNotFoundError(f"file not found: {src}")
    return _session(src, kind, threads)


def open_session(weights: str | Path | torch.nn.Module, runtime: str = "torch", device: str = "cpu",
                 threads: int | None = None, batch_size: int = 1) -> Session:
    """A session for weights (any format we load), an exported ``.onnx`` / ``.tflite`` / ``.pte``, or a
    model object.

    ``onnxruntime``, ``litert`` and ``executorch`` run our export of the weights (made once, cached by
    content hash); ``auto`` measures the runtimes once per machine, model and batch size
    (:func:`choose_runtime`) and opens the fastest.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    if not isinstance(weights, torch.nn.Module):
        found = _open_file(str(weights), runtime, threads)
        if found is not None:
            return found
        weights = load_model(weights)
    if runtime == "auto":
        runtime = choose_runtime(weights, batch_size, threads=threads, device=device).runtime
    if runtime == "torch":
        return TorchSession(weights, device, threads)
    path = cached_export(weights, runtime)
    session = _session(path, runtime, threads)
    session.config = weights.config
    return session


@dataclass
class RuntimeChoice:
    runtime: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # median batch latency of each runtime measured
    cached: bool = False


def machine_key(runtime: str, batch_size: int, threads: int) -> str:
    """What a latency depends on besides the model: CPU, threads, library versions, runtime, batch."""
    parts = [cpu_name(), str(threads), torch.__version__, runtime, str(batch_size)]
    if runtime in ("onnxruntime", "auto"):
        import onnxruntime

        parts.append(onnxruntime.__version__)
    if runtime in ("litert", "auto"):
        from ai_edge_litert import __version__ as litert_version

        parts.append(litert_version)
    if runtime in ("executorch", "auto") and "executorch" in measured_runtimes():
        from importlib.metadata import version

        parts.append(version("executorch"))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def runtime_key(config: TaskConfig, batch_size: int, threads: int, device: str) -> str:
    """What the fastest runtime depends on: the machine (:func:`machine_key`), architecture, device, precision."""
    parts = [machine_key("auto", batch_size, threads), config.name, device, "fp32"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def measure_runtimes(model: torch.nn.Module, batch_size: int = 1, threads: int | None = None, device: str = "cpu",
                     rounds: int = 5) -> dict[str, float]:
    """Median batch latency (ms) of the model in each runtime, measured in interleaved rounds whose
    order rotates (no runtime always runs after the same one: a runtime's idle worker threads slow
    the next for a moment)."""
    size = model.config.resolution
    x = np.random.default_rng(0).standard_normal((batch_size, model.config.in_chans, size, size)).astype(np.float32)
    runtimes = measured_runtimes(model) if device == "cpu" else ("torch",)  # the others run on the CPU here
    sessions = {r: open_session(model, r, device, threads) for r in runtimes}
    per_round: dict[str, list[float]] = {r: [] for r in runtimes}
    order = list(sessions.items())
    for i in range(rounds):
        for r, s in order[i % len(order):] + order[: i % len(order)]:
            per_round[r].append(statistics.median(time_fn(lambda s=s: s.run(x), warmup=3, iters=10, min_seconds=0.2)))
    return {r: round(statistics.median(v) * 1e3, 4) for r, v in per_round.items()}


def choose_runtime(model: torch.nn.Module, batch_size: int = 1, *, threads: int | None = None, device: str = "cpu",
                   remeasure: bool = False, cache: Path | None = None,
                   measure: Callable[..., dict[str, float]] = measure_runtimes) -> RuntimeChoice:
    """The fastest runtime for ``model`` on this machine: measured once (``measure``), then cached in
    ``runtime.json`` beside the latency cache; GPUs run in torch."""
    threads = threads or cpu_threads()
    device = str(device)
    cache = cache or cache_dir() / "runtime.json"
    key = runtime_key(model.config, batch_size, threads, device)
    data: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.is_file() else {}
    if key in data and not remeasure:
        timings, cached = data[key], True
    else:
        timings, cached = measure(model, batch_size=batch_size, threads=threads, device=device), False
        data[key] = timings
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps(data, indent=1))
    return RuntimeChoice(min(timings, key=timings.__getitem__), dict(timings), cached)

