"""The run folder and the training state: what a kill can interrupt and a resume restores.

A run folder holds ``config.yaml`` (the resolved configuration), ``state.pt`` (everything a
resume needs), and files derived from the state at each epoch end: ``metrics.jsonl``,
``last.safetensors`` / ``best.safetensors`` and ``curves.png``; ``summary.json`` at the end.
The folder appears with its configuration in it; the state is written before the files derived
from it, so a resume can always rewrite them. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..utils.fsutil import atomic_write, atomic_write_text, create_dir_atomically

CONFIG_FILE = "config.yaml"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"


@dataclass
class EpochSums:
    """Sums over the part of an epoch done so far (kept in mid-epoch checkpoints)."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    bad: int = 0
    seconds: float = 0.0

    def merge(self, other: EpochSums) -> EpochSums:
        return EpochSums(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclass
class TrainState:
    """Everything a resume needs; ``batch_in_epoch`` > 0 marks a mid-epoch checkpoint."""

    epoch: int  # epochs completed
    batch_in_epoch: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    ema: dict[str, torch.Tensor] | None
    rng: dict[str, Any]
    best_metric: float
    best_epoch: int
    partial: EpochSums
    classes: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["partial"] = dataclasses.asdict(self.partial)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**{**d, "partial": EpochSums(**d["partial"])})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


@dataclass
class Run:
    """The files of one run folder."""

    path: Path
    config: Path = field(init=False)
    state: Path = field(init=False)
    metrics: Path = field(init=False)
    last: Path = field(init=False)
    best: Path = field(init=False)
    curves: Path = field(init=False)
    summary: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.config, self.state, self.metrics = (self.path / n for n in (CONFIG_FILE, STATE_FILE, METRICS_FILE))
        self.last, self.best = self.path / "last.safetensors", self.path / "best.safetensors"
        self.curves, self.summary = self.path / "curves.png", self.path / "summary.json"

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> Run:
        """A new run folder that never exists without its ``config.yaml``."""
        create_dir_atomically(path, {CONFIG_FILE: yaml.safe_dump(config, sort_keys=False)})
        return cls(Path(path))

    def saved_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.path}: not a run folder (no {CONFIG_FILE}); start one with --out")
        return yaml.safe_load(self.config.read_text()) or {}

    def remove_stale_files(self) -> None:
        """Temporary files of writes that a kill interrupted (the writer's job: rank 0 only)."""
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def save_state(self, state: TrainState) -> None:
        try:
            atomic_write(self.state, lambda p: torch.save(state.to_dict(), p))
        except OSError as e:
            raise OSError(e.errno, f"cannot write the checkpoint {self.state} ({e.strerror or e}); the previous "
                                   "checkpoint is intact - free some space and resume") from None

    def restore(self) -> TrainState | None:
        """The last complete checkpoint, or None when the run has none yet."""
        if not self.state.exists():
            return None
        return TrainState.from_dict(torch.load(self.state, map_location="cpu", weights_only=True))

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))
