"""Shared bits of the benchmark scripts: machine description for the JSON they print."""

from __future__ import annotations

import os
import platform

import torch

from mobilenets.runtime import cpu_name


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
