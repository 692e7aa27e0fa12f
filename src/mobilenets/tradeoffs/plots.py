"""Trade-off plots: accuracy against cost, with the Pareto front (the models worth choosing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.plotting import pyplot, save_figure


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower cost and higher accuracy)."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def plot_tradeoffs(rows: Sequence[dict[str, Any]], out_dir: str | Path, title: str = "") -> list[Path]:
    """Accuracy vs MAdds (log), vs params, vs measured latency - the V1 paper's Figures 4 and 5 -
    with the Pareto front of each highlighted. Returns the PNG paths."""
    plt = pyplot()
    out_dir = Path(out_dir)
    paths = []
    for key, label, log, fname in (("madds", "Mult-Adds (millions, log scale)", True, "accuracy_vs_madds.png"),
                                   ("params", "parameters (millions)", False, "accuracy_vs_params.png"),
                                   ("latency_ms", "measured latency (ms)", False, "accuracy_vs_latency.png")):
        scale = 1e6 if key in ("madds", "params") else 1.0
        xs = [r[key] / scale for r in rows]
        ys = [r["top1"] for r in rows]
        front = sorted(pareto_front(list(zip(xs, ys))), key=lambda i: xs[i])
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.scatter(xs, ys, color="tab:gray", label="models")
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:red", label="Pareto front")
        for x, y, r in zip(xs, ys, rows):
            ax.annotate(r["model"].replace("MobileNet", "MN"), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title(title)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / fname))
    return paths
