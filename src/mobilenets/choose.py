"""Choosing a MobileNet for a budget: sweeps over (alpha, rho), Pareto fronts, and ``choose``.

The papers' argument is that width (alpha) and resolution (rho) let a developer pick the most
accurate network that fits a latency / size / compute budget. ``choose`` does that picking:
accuracy from the published ImageNet tables (or a sweep's CSV), params and MAdds from the cost
model, latency measured on this machine (cached per machine, runtime and batch size).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cost import profile
from .published import CHECKPOINTS, SOURCES
from .registry import parse_name
from .spec import check_input_size, format_alpha


@dataclass
class Candidate:
    model: str
    top1: float
    latency_ms: float
    params: int
    madds: int
    accuracy_source: str = ""
    feasible: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Choice:
    model: str | None
    runtime: str
    batch_size: int
    candidates: list[Candidate]
    closest: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": self.runtime, "batch_size": self.batch_size,
                "closest": self.closest, "message": self.message,
                "candidates": [c.to_dict() for c in self.candidates]}


def _limits(max_latency_ms: float | None, max_params: float | None, max_madds: float | None) -> list[tuple[str, str, float]]:
    limits = [("latency_ms", "latency", max_latency_ms), ("params", "params", max_params), ("madds", "MAdds", max_madds)]
    for _, label, v in limits:
        if v is not None and not v > 0:
            raise ValueError(f"invalid max {label} {v!r}; it must be > 0")
    return [(k, label, float(v)) for k, label, v in limits if v is not None]


def _fmt(key: str, v: float) -> str:
    return f"{v:.2f} ms" if key == "latency_ms" else f"{v / 1e6:.2f}M"


def select(candidates: Sequence[Candidate], max_latency_ms: float | None = None, max_params: float | None = None,
           max_madds: float | None = None, runtime: str = "torch", batch_size: int = 1) -> Choice:
    """The most accurate candidate meeting every constraint.

    Ties in accuracy go to the lower latency, then fewer MAdds, then fewer params. When nothing
    fits, the closest candidate is the one whose worst constraint is exceeded by the least factor.
    """
    limits = _limits(max_latency_ms, max_params, max_madds)
    if not candidates:
        raise ValueError("no candidates to choose from")
    out = []
    for c in candidates:
        c = Candidate(c.model, c.top1, c.latency_ms, c.params, c.madds, c.accuracy_source)
        for key, label, limit in limits:
            v = getattr(c, key)
            if v > limit:
                c.feasible = False
                c.reasons.append(f"{label} {_fmt(key, v)} > {_fmt(key, limit)}")
        out.append(c)
    feasible = [c for c in out if c.feasible]
    best = max(feasible, key=lambda c: (c.top1, -c.latency_ms, -c.madds, -c.params), default=None)
    for c in feasible:
        if c is not best:
            c.reasons.append(f"fits, but less accurate than {best.model}" if c.top1 < best.top1 else
                             f"fits, as accurate as {best.model} but not faster")
    if best is not None:
        best.reasons.append("chosen: the most accurate model within the budget")
        return Choice(best.model, runtime, batch_size, out,
                      message=f"{best.model}: top-1 {best.top1:.1f}%, {best.latency_ms:.2f} ms, "
                              f"{best.params / 1e6:.2f}M params, {best.madds / 1e6:.0f}M MAdds")

    def excess(c: Candidate) -> float:
        return max(getattr(c, key) / limit for key, _, limit in limits)

    closest = min(out, key=lambda c: (excess(c), -c.top1))
    return Choice(None, runtime, batch_size, out, closest=closest.model,
                  message=f"no model meets every constraint; the closest is {closest.model} "
                          f"({'; '.join(closest.reasons)})")


def accuracy_table(family: str, source: str = "imagenet") -> dict[str, tuple[float, str]]:
    """{model: (top-1, source)} from the published TF tables, or from a sweep CSV file."""
    if family not in ("v1", "v2"):
        raise ValueError(f"invalid family {family!r}; valid: v1, v2")
    if source == "imagenet":
        return {ck.model: (ck.top1, f"ImageNet, {SOURCES[family]}") for ck in CHECKPOINTS[family]}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"accuracy source not found: {source} (use 'imagenet' or a sweep CSV)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"model", "top1"} <= set(rows[0]):
        raise ValueError(f"{source}: a sweep CSV needs 'model' and 'top1' columns")
    table = {r["model"]: (float(r["top1"]), f"sweep {path.name}") for r in rows}
    fam_rows = {m: v for m, v in table.items() if ("V2" in m) == (family == "v2")}
    if not fam_rows:
        raise ValueError(f"{source} has no {family} models")
    return fam_rows


# ------------------------------------------------------------------------------ latency, cached


def machine_key(runtime: str, batch_size: int, threads: int) -> str:
    import torch

    from .device import cpu_name

    parts = [cpu_name(), str(threads), torch.__version__, runtime, str(batch_size)]
    if runtime == "onnxruntime":
        import onnxruntime

        parts.append(onnxruntime.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def measure_latencies(models: Sequence[str], runtime: str = "torch", batch_size: int = 1, remeasure: bool = False,
                      cache: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Median batch latency (ms) of each model on this machine, cached in a JSON file."""
    from .bench import bench
    from .fsutil import atomic_write_text
    from .device import cpu_threads
    from .weights.hub import cache_dir

    threads = cpu_threads()
    cache = cache or cache_dir() / "latency.json"
    key = machine_key(runtime, batch_size, threads)
    data: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.is_file() else {}
    known = {} if remeasure else dict(data.get(key, {}))
    out = {}
    for m in models:
        if m not in known:
            if progress:
                progress(m)
            known[m] = round(bench(m, runtime=runtime, batch_size=batch_size, threads=threads).latency_ms, 4)
            data[key] = known
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps(data, indent=1))
        out[m] = known[m]
    return out


def choose(family: str, *, max_latency_ms: float | None = None, max_params: float | None = None,
           max_madds: float | None = None, runtime: str = "torch", batch_size: int = 1, accuracy: str = "imagenet",
           remeasure: bool = False, cache: Path | None = None, input_size: int | None = None,
           progress: Callable[[str], None] | None = None) -> Choice:
    """The most accurate MobileNet of ``family`` within the budget, measured on this machine.

    ``input_size`` keeps only the candidates at that resolution (a camera or pipeline that fixes it).
    """
    _limits(max_latency_ms, max_params, max_madds)
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    acc = accuracy_table(family, accuracy)
    if input_size is not None:
        check_input_size(input_size)
        sizes = sorted({parse_name(m).resolution for m in acc})
        acc = {m: v for m, v in acc.items() if parse_name(m).resolution == input_size}
        if not acc:
            raise ValueError(f"no {family} candidate at input size {input_size}; valid: {', '.join(map(str, sizes))}")
    lat = measure_latencies(list(acc), runtime, batch_size, remeasure, cache, progress)
    cands = []
    for m, (top1, src) in acc.items():
        p = profile(m)
        cands.append(Candidate(m, top1, lat[m], p.params, p.madds, src))
    return select(cands, max_latency_ms, max_params, max_madds, runtime, batch_size)


# ------------------------------------------------------------------------------ sweeps


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower cost and higher accuracy)."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


SWEEP_COLUMNS = ("model", "alpha", "resolution", "top1", "top5", "madds", "params", "latency_ms", "runtime", "epochs",
                 "weights")


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    csv: str
    plots: list[str]


def sweep(family: str = "v2", widths: Sequence[float] = (1.0, 0.75, 0.5, 0.35), resolutions: Sequence[int] = (224, 192, 160, 128),
          *, data: str | None = None, out: str | Path = "sweep", epochs: int | None = None, runtime: str = "torch",
          latency_batch_size: int = 1, progress: bool = True, **train_options: Any) -> SweepResult:
    """Train every (alpha, resolution) combination, measure it, and write a CSV and trade-off plots.

    Resumable: finished runs are read back, interrupted ones continue from their checkpoint.
    """
    from .plots import plot_tradeoffs
    from .training import TrainConfig, train

    if family not in ("v1", "v2"):
        raise ValueError(f"invalid family {family!r}; valid: v1, v2")
    if not widths or not resolutions:
        raise ValueError("give at least one width and one resolution")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    names = [f"{format_alpha(a)}-MobileNet{'V2' if family == 'v2' else ''}-{r}" for a in widths for r in resolutions]
    for name in names:
        run = out / name
        if (run / "summary.json").is_file():
            summary = json.loads((run / "summary.json").read_text())
        elif (run / "state.pt").is_file():
            summary = train(resume=run, progress=progress).summary()
        else:
            cfg = TrainConfig(model=name, data=data, epochs=epochs, out=str(run), progress=progress, **train_options)
            summary = train(cfg).summary()
        p = profile(name)
        rows.append({"model": name, "alpha": float(name.split("-")[0]), "resolution": int(name.rsplit("-", 1)[1]),
                     "top1": round(summary["top1"], 4), "top5": round(summary["top5"], 4), "madds": p.madds,
                     "params": p.params, "runtime": runtime, "epochs": summary["epochs"],
                     "weights": summary["weights"]})
    lat = measure_latencies(names, runtime, latency_batch_size)
    for r in rows:
        r["latency_ms"] = lat[r["model"]]
    csv_path = out / "sweep.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    plots = plot_tradeoffs(rows, out, title=f"MobileNet {family.upper()} sweep ({data or 'digits'})")
    return SweepResult(rows, str(csv_path), [str(p) for p in plots])


def parse_count(text: str) -> float:
    """'2.5M', '300e6', '4000000' -> a number (for --max-params / --max-madds)."""
    t = text.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:], 1.0)
    try:
        value = float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        raise ValueError(f"invalid count {text!r}; examples: 2.5M, 300M, 4000000") from None
    if not math.isfinite(value):
        raise ValueError(f"invalid count {text!r}")
    return value
