"""Choosing a network for a budget, the papers' point: measurement on this machine (``measure``:
latency and training speed), budget-driven choice (``choose``), sweeps over width and resolution
(``sweep``) and their accuracy-vs-cost plots with Pareto fronts (``plots``)."""

from .choose import Candidate, Choice, choose, select
from .measure import bench
from .sweep import SweepResult, sweep

__all__ = ["Candidate", "Choice", "SweepResult", "bench", "choose", "select", "sweep"]
