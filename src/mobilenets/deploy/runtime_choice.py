"""Opening a session: any weights we load, an exported file or a model object, in a chosen runtime -
or, with ``runtime="auto"``, in the runtime measured fastest for that model on this machine.

auto measures each runtime alone: every runtime runs in a worker process of its own
(:mod:`mobilenets.deploy.worker`), one at a time, and a worker answers only once its own threads
have gone idle, so no runtime's spinning thread pool slows the next. Rounds interleave the runtimes
(rotating order) until the fastest is ahead by more than the noise, or the rounds run out; runtimes
within the noise of the fastest (3%, as ratios within rounds) are a tie, kept stable from run to run."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..tasks import TaskConfig, config_of, kind_of, weights_meta_of
from ..utils.device import cpu_name, cpu_threads
from ..utils.timing import time_fn
from ..weights import load_model, save_weights
from ..weights.published import cache_dir
from .artifact import export_size
from .measurements import Measurements
from .onnx import export_onnx
from .sessions import (
    ExecutorchSession,
    LitertSession,
    OnnxSession,
    OpenvinoSession,
    Session,
    TorchSession,
    executorch_installed,
    openvino_installed,
)

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino", "litert", "executorch")
# the runtimes that run each exported format (the first: what auto picks without measuring)
FILE_RUNTIMES = {".onnx": ("onnxruntime", "openvino"), ".tflite": ("litert",), ".pte": ("executorch",)}
#: Exported graphs that only their runtimes run (a TFLite file is also weights: torch runs it through our loader)
GRAPH_SUFFIXES = (".onnx", ".pte")
EXPORT_SUFFIX = {"onnxruntime": "onnx", "openvino": "onnx", "litert": "tflite", "executorch": "pte"}
NOISE = 0.03  # runtimes within 3% of the fastest (median of within-round ratios) are a tie
PREFERENCE = ("litert", "onnxruntime", "openvino", "executorch", "torch")  # a tie's order without a past choice


def installed_runtimes() -> tuple[str, ...]:
    """Every runtime this machine can run (ExecuTorch and OpenVINO are optional extras)."""
    return (("torch", "onnxruntime") + (("openvino",) if openvino_installed() else ()) + ("litert",)
            + (("executorch",) if executorch_installed() else ()))


def candidate_runtimes(model: torch.nn.Module | str | Path | None = None) -> tuple[str, ...]:
    """What "auto" chooses among: every installed runtime that runs ``model`` (a Faster R-CNN exports
    to ONNX only, traced for one image, which only our ONNX Runtime session runs image by image; an
    exported file runs in the runtimes of its format)."""
    installed = installed_runtimes()
    if isinstance(model, str | Path):
        return tuple(r for r in FILE_RUNTIMES.get(Path(model).suffix, ()) if r in installed)
    if model is None:
        return installed
    kind = kind_of(model)
    if kind.onnx_exporter == "torchscript":
        return ("torch", "onnxruntime")
    return tuple(r for r in installed if r == "torch" or EXPORT_SUFFIX[r] in kind.formats)


def default_runtime(source: str | Path | None = None) -> str:
    """The CLI's default runtime: ``$MOBILENETS_RUNTIME`` if set (e.g. ``torch`` to skip measuring), else
    auto. A ``.onnx`` or ``.pte`` ``source`` runs in a runtime of its format: the one set if it is one,
    else auto, or without measuring (``torch`` set) the format's first."""
    value = os.environ.get("MOBILENETS_RUNTIME", "auto")
    if value not in RUNTIMES:
        raise ValueError(f"MOBILENETS_RUNTIME={value!r} is not a runtime; valid: {', '.join(RUNTIMES)}")
    suffix = Path(str(source)).suffix if source is not None else ""
    if suffix in (".onnx", ".pte"):
        kinds = FILE_RUNTIMES[suffix]
        return value if value == "auto" or value in kinds else kinds[0]
    return value


def _digest(model: torch.nn.Module) -> str:
    """Content hash of a model (config, weights, and the classes and preprocessing an export records): the
    key of its cached exports."""
    meta = weights_meta_of(model)
    h = hashlib.sha256(config_of(model).name.encode())
    h.update(json.dumps([meta.get("classes"), meta.get("preprocessing")], sort_keys=True, default=str).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_export(model: torch.nn.Module, runtime: str) -> Path:
    """Our export of ``model`` for ``runtime`` (ONNX, float TFLite or ExecuTorch; torch: the weights as
    safetensors, for a worker process), made once per content hash."""
    suffix = EXPORT_SUFFIX.get(runtime, "safetensors")
    path = cache_dir() / suffix / f"{config_of(model).name}-{_digest(model)}.{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if runtime == "torch":
            meta = weights_meta_of(model)
            save_weights(model, path, classes=meta.get("classes"), preprocessing=meta.get("preprocessing"))
        elif suffix == "onnx":
            export_onnx(model, path, check=False)
        elif runtime == "litert":
            from .tflite import export_tflite  # litert-torch is heavy: only when a TFLite file is needed

            export_tflite(model, path)
        else:
            from .pte import export_pte  # so is ExecuTorch

            export_pte(model, path)
    return path


def _session(path: str | Path, runtime: str, threads: int | None) -> Session:
    kinds: dict[str, Callable[..., Session]] = {"onnxruntime": OnnxSession, "openvino": OpenvinoSession,
                                                "litert": LitertSession, "executorch": ExecutorchSession}
    return kinds[runtime](path, threads)


def _open_file(src: str, runtime: str, threads: int | None, batch_size: int) -> Session | None:
    """An exported file in a runtime of its format (``auto``: the fastest of them, measured once)."""
    kinds = FILE_RUNTIMES.get(Path(src).suffix)
    if kinds is None or (Path(src).suffix not in GRAPH_SUFFIXES and runtime == "torch"):
        return None  # weights (a TFLite file runs in torch through our loader)
    if runtime != "auto" and runtime not in kinds:
        raise ValueError(f"{src} is a {Path(src).suffix} file: use --runtime {' or '.join(kinds)} (or auto)")
    if not Path(src).exists():
        raise FileNotFoundError(f"file not found: {src}")
    if runtime == "auto":
        candidates = candidate_runtimes(src)
        runtime = candidates[0] if len(candidates) == 1 else choose_runtime(src, batch_size, threads=threads).runtime
    return _session(src, runtime, threads)


def open_session(weights: str | Path | torch.nn.Module, runtime: str = "torch", device: str = "cpu",
                 threads: int | None = None, batch_size: int = 1) -> Session:
    """A session for weights (any format we load), an exported ``.onnx`` / ``.tflite`` / ``.pte``, or a
    model object.

    ``onnxruntime``, ``openvino``, ``litert`` and ``executorch`` run our export of the weights (made once,
    cached by content hash); ``auto`` measures the runtimes once per machine, model and batch size
    (:func:`choose_runtime`) and opens the fastest.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    if not isinstance(weights, torch.nn.Module):
        found = _open_file(str(weights), runtime, threads, batch_size)
        if found is not None:
            return found
        weights = load_model(weights)
    if runtime == "auto":
        runtime = choose_runtime(weights, batch_size, threads=threads, device=device).runtime
    if runtime == "torch":
        return TorchSession(weights, device, threads)
    return _session(cached_export(weights, runtime), runtime, threads)


@dataclass
class RuntimeChoice:
    runtime: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # median batch latency of each runtime measured
    cached: bool = False
    spread: dict[str, float] = field(default_factory=dict)  # (max - min) / median of each runtime's rounds
    measured_at: str = ""  # ISO 8601, UTC
    tied: list[str] = field(default_factory=list)  # runtimes within the noise of the fastest


def machine_key(runtime: str, batch_size: int, threads: int) -> str:
    """What a latency depends on besides the model: CPU, threads, library versions, runtime, batch."""
    from importlib.metadata import version

    parts = [cpu_name(), str(threads), torch.__version__, runtime, str(batch_size)]
    packages = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai-edge-litert",
                "executorch": "executorch"}
    for name in installed_runtimes():
        if runtime in (name, "auto") and name in packages:
            parts.append(f"{name} {version(packages[name])}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def runtime_key(model: TaskConfig | str | Path, batch_size: int, threads: int, device: str) -> str:
    """What the fastest runtime depends on: the machine (:func:`machine_key`), the architecture (or an
    exported file's content), device, precision."""
    what = model.name if isinstance(model, TaskConfig) else hashlib.sha256(Path(model).read_bytes()).hexdigest()
    parts = [machine_key("auto", batch_size, threads), what, device, "fp32" if isinstance(model, TaskConfig) else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def wait_idle(window: float = 0.02, busy: float = 0.05, timeout: float = 2.0) -> bool:
    """Return once this process's threads (all of them: a runtime's pool too) used less than ``busy``
    of one core over ``window`` seconds; False if they were still busy after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        cpu = time.process_time()
        time.sleep(window)
        if time.process_time() - cpu < busy * window:
            return True
    return False


class Worker:
    """A runtime in a process of its own (:mod:`mobilenets.deploy.worker`), timed on request; start
    several, then :meth:`ask` them one at a time."""

    def __init__(self, runtime: str, source: Path, threads: int) -> None:
        cmd = [sys.executable, "-m", "mobilenets.deploy.worker", runtime, str(source), str(threads)]
        self.runtime = runtime
        # a file, not a pipe: native logs cannot fill it and block the worker; closed in close()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ask(self, **request: object) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            last = self.log.read().strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the {self.runtime} worker stopped: {last[0]}")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def measure_isolated(sources: dict[str, Path], shape: Sequence[int], threads: int, *, min_rounds: int = 3,
                     max_rounds: int = 9, seconds: float = 0.25) -> dict[str, list[float]]:
    """Each runtime's median batch latency (ms) in each round, every runtime in a worker process of its
    own (``sources``: runtime -> the file it opens), timed one at a time: rounds rotate the order and
    stop once the fastest leads by more than the noise (:func:`ranked`)."""
    workers = {r: Worker(r, p, threads) for r, p in sources.items()}
    try:
        for r, w in list(workers.items()):
            try:
                w.ask(cmd="ready")  # the workers load side by side; nothing is timed yet
            except RuntimeError as e:  # a runtime that cannot open the model is not a candidate
                print(f"auto: {e}; choosing among the others", file=sys.stderr)
                w.close()
                del workers[r]
        if not workers:
            raise RuntimeError("no runtime could open the model")
        wait_idle()
        rounds: dict[str, list[float]] = {r: [] for r in workers}
        order = list(workers)
        for i in range(max_rounds):
            for r in order[i % len(order):] + order[: i % len(order)]:
                if r not in workers:
                    continue
                try:
                    reply = workers[r].ask(cmd="time", shape=list(shape), seconds=seconds)
                except RuntimeError as e:  # a runtime that fails on the batch is not a candidate either
                    print(f"auto: {e}; choosing among the others", file=sys.stderr)
                    workers.pop(r).close()
                    del rounds[r]
                    continue
                rounds[r].append(float(reply["median_ms"]))  # type: ignore[arg-type]
            if not workers:
                raise RuntimeError("no runtime could run the model")
            if i + 1 >= min_rounds and len(ranked(rounds)) == 1:
                break
        return rounds
    finally:
        for w in workers.values():
            w.close()


def _summary(rounds: Sequence[float]) -> tuple[float, float]:
    """Median and spread ((max - min) / median) of a runtime's round medians."""
    med = statistics.median(rounds)
    return med, (max(rounds) - min(rounds)) / med if med else 0.0


def ranked(rounds: dict[str, list[float]]) -> list[str]:
    """The runtimes tied for fastest, fastest first: each runtime's latency over the fastest's, taken within
    each round (noise that hits a whole round cancels) and its median over the rounds, within ``NOISE``."""
    timed = {r: v for r, v in rounds.items() if v}
    best = min(timed, key=lambda r: statistics.median(timed[r]))
    ratio = {r: statistics.median(a / b for a, b in zip(v, timed[best], strict=False)) for r, v in timed.items()}
    return sorted((r for r, q in ratio.items() if q <= 1 + NOISE), key=lambda r: ratio[r])


def stable_choice(tied: Sequence[str], previous: str | None) -> str:
    """Among runtimes within the noise: the previous choice if it is one of them, else a fixed order."""
    if previous in tied:
        return str(previous)
    return min(tied, key=lambda r: PREFERENCE.index(r) if r in PREFERENCE else len(PREFERENCE))


def measure_runtimes(model: torch.nn.Module | str | Path, batch_size: int = 1, threads: int | None = None,
                     device: str = "cpu", max_rounds: int = 9) -> dict[str, list[float]]:
    """Median batch latency (ms) of ``model`` (a model, or an exported file) in each runtime that runs
    it, per round, each measured alone (:func:`measure_isolated`); a GPU is measured in this process
    (torch only)."""
    threads = threads or cpu_threads()
    if isinstance(model, torch.nn.Module):
        size, chans = export_size(model), config_of(model).in_chans
        if device != "cpu":
            session = TorchSession(model, device, threads)
            x = np.zeros((batch_size, chans, size, size), np.float32)
            return {"torch": [statistics.median(time_fn(lambda: session.run(x), 3, 10, 0.2)) * 1e3]}
        sources = {r: cached_export(model, r) for r in candidate_runtimes(model)}
        shape = [batch_size, chans, size, size]
    else:
        sources = {r: Path(model) for r in candidate_runtimes(model)}
        probe = _session(model, next(iter(sources)), threads)
        shape = [batch_size, *_image_shape(probe)]
    return measure_isolated(sources, shape, threads, max_rounds=max_rounds)


def _image_shape(session: Session) -> list[int]:
    """An exported file's image shape, NCHW, from its record or its preprocessing."""
    from ..tasks import parse_model_name

    if session.config is None and "model" not in session.meta:
        raise ValueError(f"{getattr(session, 'path', 'this file')} records no model: choose --runtime "
                         f"{' or '.join(FILE_RUNTIMES['.onnx'])}")
    config = session.config or parse_model_name(session.meta["model"])
    size = (session.meta.get("preprocessing") or {}).get("input_size") or config.resolution
    return [config.in_chans, size, size]


def choose_runtime(model: torch.nn.Module | str | Path, batch_size: int = 1, *, threads: int | None = None,
                   device: str = "cpu", remeasure: bool = False, cache: Path | None = None,
                   measure: Callable[..., dict[str, list[float]] | dict[str, float]] | None = None,
                   ) -> RuntimeChoice:
    """The fastest runtime for ``model`` (or an exported file) on this machine: measured once
    (``measure``: each runtime alone), then cached (:class:`Measurements`, beside the models'
    latencies) with its time and spread; ``remeasure`` refreshes it. GPUs run in torch. Runtimes within the noise
    keep the previous choice (:func:`stable_choice`)."""
    threads = threads or cpu_threads()
    device = str(device)
    store = Measurements(cache)
    config = config_of(model) if isinstance(model, torch.nn.Module) else model
    key = runtime_key(config, batch_size, threads, device)
    entry = store.read("runtime", key)
    if "runtime" in entry and not remeasure:
        return RuntimeChoice(**{**entry, "cached": True})
    measured = (measure or measure_runtimes)(model, batch_size=batch_size, threads=threads, device=device)
    rounds = {r: v if isinstance(v, list) else [v] for r, v in measured.items()}
    stats = {r: _summary(v) for r, v in rounds.items()}
    tied = ranked(rounds)
    previous = entry.get("runtime")
    choice = RuntimeChoice(stable_choice(tied, previous if isinstance(previous, str) else None),
                           {r: round(m, 4) for r, (m, _) in stats.items()}, False,
                           {r: round(sp, 4) for r, (_, sp) in stats.items()},
                           datetime.now(UTC).isoformat(timespec="seconds"), tied)
    store.write("runtime", key, {k: v for k, v in asdict(choice).items() if k != "cached"})
    return choice
