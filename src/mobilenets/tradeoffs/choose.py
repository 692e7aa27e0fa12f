"""Choosing a MobileNet for a budget.

The papers' argument is that width (alpha) and resolution (rho) let a developer pick the most
accurate network that fits a latency / size / compute budget. ``choose`` does that picking:
accuracy from the published ImageNet tables (or a sweep's CSV), params and MAdds from the cost
model, latency measured on this machine (cached per machine, runtime and batch size).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..analysis import profile
from ..analysis.reported import CHECKPOINTS, SOURCES
from ..deploy.bench import measure_latencies
from ..models import check_input_size, parse_name


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


def _limits(max_latency_ms: float | None, max_params: float | None,
            max_madds: float | None) -> list[tuple[str, str, float]]:
    limits = [("latency_ms", "latency", max_latency_ms), ("params", "params", max_params),
              ("madds", "MAdds", max_madds)]
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
        if best is not None and c is not best:
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
