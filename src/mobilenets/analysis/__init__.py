"""Analysis computed from the spec, with no forward pass: the cost model (``cost``: params and
multiply-adds per layer), the papers' tables beside ours (``paper_tables``), the accuracies
Google reported for its checkpoints (``reported``) and activation memory (``memory``)."""

from .cost import LayerCost, Profile, profile, profile_arch
from .memory import MemoryAnalysis, PeakMemory, analyze, measure_peak
from .paper_tables import paper_tables
from .reported import CHECKPOINTS

__all__ = ["CHECKPOINTS", "LayerCost", "MemoryAnalysis", "PeakMemory", "Profile", "analyze", "measure_peak",
           "paper_tables", "profile", "profile_arch"]
