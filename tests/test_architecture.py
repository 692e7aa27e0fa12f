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
