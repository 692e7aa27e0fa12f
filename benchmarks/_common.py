"""Shared bits of the benchmark scripts: machine description for the JSON they print.

int8 and bf16 speed-ups depend on the CPU's features (VNNI, AVX512-BF16, AMX), so every
benchmark prints them next to its ratios: a ratio measured on one kind of CPU does not carry over.
"""

from __future__ import annotations

import os
import platform

import torch

from mobilenets.utils.device import cpu_features


def machine() -> dict[str, object]:
    cpu = cpu_features()
    return {
        "cpu": cpu.name,
        "cpu_features": cpu.summary,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
