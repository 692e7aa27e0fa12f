"""The package's layering (pyproject.toml [tool.importlinter]): no upward imports, no cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_layers_and_no_cycles() -> None:
    # in its own process: import-linter's console output does not survive every earlier test's
    # stream capture in this one (run after tests/test_weights.py it failed on a closed file)
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_types_check() -> None:
    """``mypy`` over the package, configured in pyproject.toml [tool.mypy]."""
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_lint_clean() -> None:
    """``ruff check`` over the package, the tests and the benchmarks, as pyproject.toml [tool.ruff] says."""
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_task_branches_stay_in_tasks() -> None:
    """Higher layers ask a task's registered kind (mobilenets.tasks.registry) instead of testing which
    task or model class they hold: no branch on a task name or a task's class outside tasks/."""
    import re

    pattern = re.compile(r"task(\.name)? *(==|!=|in) *[\"'(\[]|isinstance\([^)]*\b(SSD|FasterRCNN|DeepLabV3|"
                         r"DetectorConfig|SegmenterConfig|FasterRCNNConfig|DetectionPipeline|SegmentationPipeline)\b")
    package = REPO / "src" / "mobilenets"
    outside = [p for p in package.rglob("*.py") if p.relative_to(package).parts[0] != "tasks"]
    found = [f"{p.relative_to(package)}:{i}" for p in outside
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
