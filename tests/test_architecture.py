"""The package's layering (pyproject.toml [tool.importlinter]): no upward imports, no cycles."""

from __future__ import annotations

import pytest
from conftest import REPO
from importlinter.cli import lint_imports


def test_layers_and_no_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    rc = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 kept, 0 broken" in out
