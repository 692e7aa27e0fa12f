"""Device, precision and memory-format choices, made once and explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"invalid device {name!r}; valid: auto, cpu, cuda, cuda:N, mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return dev


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 / AMX), where oneDNN uses it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and whether a GradScaler is needed (fp16 only)."""

    dtype: torch.dtype | None
    device_type: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                yield


def pick_precision(amp: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA with bf16 support, else fp16 on CUDA; bf16 on CPUs that compute bf16
    natively (AVX512-BF16/AMX: 2x the fp32 training throughput of 1.0-MobileNetV2-224 here); fp32
    elsewhere. Tiny inputs (the 32 px digits preset) train faster in fp32: the preset says so.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"invalid amp {amp!r}; valid: {', '.join(AMP_CHOICES)}")
    dev = device.type
    if amp == "auto":
        if dev == "cuda":
            return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, dev)
        if dev == "cpu" and cpu_has_bf16():
            return Precision(torch.bfloat16, dev)
        return Precision(None, dev)
    if amp == "off":
        return Precision(None, dev)
    if amp == "fp16" and dev == "cpu":
        raise ValueError("fp16 autocast is for GPUs; on CPU use --amp bf16 or off")
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16, dev)
