"""Sweeps: train every (width, resolution) pair, measure each, and write a CSV and trade-off plots
in the style of the V1 paper's Figures 4-5."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..analysis import profile
from ..deploy.bench import measure_latencies
from ..models import ModelConfig
from ..models.spec import Family
from ..training import TrainConfig, train
from ..training.checkpoint import Run
from .plots import plot_tradeoffs

SWEEP_COLUMNS = ("model", "alpha", "resolution", "top1", "top5", "madds", "params", "latency_ms", "runtime", "epochs",
                 "weights")


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    csv: str
    plots: list[str]


def sweep(family: str = "v2", widths: Sequence[float] = (1.0, 0.75, 0.5, 0.35),
          resolutions: Sequence[int] = (224, 192, 160, 128),
          *, data: str | None = None, out: str | Path = "sweep", epochs: int | None = None, runtime: str = "torch",
          latency_batch_size: int = 1, progress: bool = True, **train_options: Any) -> SweepResult:
    """Train every (alpha, resolution) combination, measure it, and write a CSV and trade-off plots.

    Resumable: finished runs are read back, interrupted ones continue from their checkpoint.
    """
    if family not in ("v1", "v2"):
        raise ValueError(f"invalid family {family!r}; valid: v1, v2")
    if not widths or not resolutions:
        raise ValueError("give at least one width and one resolution")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    configs = [ModelConfig(family=cast(Family, family), alpha=a, resolution=r) for a in widths for r in resolutions]
    names = [c.name for c in configs]
    for cfg, name in zip(configs, names):
        run = Run(out / name)
        if run.summary.is_file():
            summary = json.loads(run.summary.read_text())
        elif run.config.is_file():  # started: continue it (from the start if it has no checkpoint)
            summary = train(resume=run.path, progress=progress).summary()
        else:
            summary = train(TrainConfig(model=name, data=data, epochs=epochs, out=str(run.path), progress=progress,
                                        **train_options)).summary()
        p = profile(name)
        rows.append({"model": name, "alpha": cfg.alpha, "resolution": cfg.resolution,
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
