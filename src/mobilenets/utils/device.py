"""Device, precision and memory-format choices, made once and explicitly; what this CPU can do."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def cpu_threads() -> int:
    """Cores this process may use (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cpuinfo() -> tuple[str, set[str]]:
    """Model name and feature flags: /proc/cpuinfo on Linux, sysctl on macOS."""
    name, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "features") and not flags:  # x86 "flags", ARM "Features"
                    flags = set(value.split())
        return name or platform.processor() or platform.machine(), flags
    except OSError:
        pass
    name = platform.processor() or platform.machine()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return name, flags
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key == "machdep.cpu.brand_string":
                name = value.strip()
            elif key.startswith("hw.optional.arm.FEAT_") and value.strip() == "1":
                flags.add(key.rsplit("FEAT_", 1)[1].lower())
    return name, flags


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and the instruction-set features that decide int8 and bf16 speed."""

    name: str
    arch: str
    flags: frozenset[str]

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """int8 dot products: AVX512-VNNI or AVX-VNNI (x86), or the ARM dot-product extension."""
        return bool({"avx512_vnni", "avx_vnni", "asimddp", "dotprod"} & self.flags)

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def amx(self) -> bool:
        return bool({"amx_tile", "amx_bf16", "amx_int8"} & self.flags)

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX512-BF16, AMX, ARM BF16); elsewhere bf16 is emulated."""
        return self.avx512_bf16 or "amx_bf16" in self.flags or "bf16" in self.flags

    @property
    def summary(self) -> str:
        """The features present, as benchmarks print them next to every ratio."""
        names = [("AVX2", self.avx2), ("AVX-512", self.avx512), ("VNNI", self.vnni),
                 ("AVX512-BF16", self.avx512_bf16), ("AMX", self.amx)]
        if self.arch in ("aarch64", "arm64"):
            names = [("NEON", True), ("dotprod", self.vnni), ("BF16", self.native_bf16)]
        present = [n for n, ok in names if ok]
        return ", ".join(present) or "none of AVX2/AVX-512/VNNI/AVX512-BF16/AMX"

    def to_dict(self) -> dict[str, object]:
        return {"cpu": self.name, "arch": self.arch, "features": self.summary, "avx2": self.avx2,
                "avx512": self.avx512, "vnni": self.vnni, "avx512_bf16": self.avx512_bf16, "amx": self.amx,
                "native_bf16": self.native_bf16}


def cpu_max_mhz() -> float | None:
    """The highest clock this CPU reports: cpufreq's maximum, /proc/cpuinfo's "cpu MHz" or the
    "@ 2.50GHz" of its name (None where none is readable)."""
    found: list[float] = []
    try:
        found.append(int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000)
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            found += [float(line.partition(":")[2]) for line in f if line.lower().startswith("cpu mhz")]
    except (OSError, ValueError):
        pass
    m = re.search(r"@\s*([\d.]+)\s*GHz", cpu_name())
    if m:
        found.append(float(m[1]) * 1000)
    return max(found) if found else None


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's CPU (read once per process)."""
    name, flags = _cpuinfo()
    return CpuFeatures(name, platform.machine().lower(), frozenset(flags))


def cpu_name() -> str:
    """This machine's CPU model (for benchmark reports and per-machine caches)."""
    return cpu_features().name


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
        if dev == "cpu" and cpu_features().native_bf16:
            return Precision(torch.bfloat16, dev)
        return Precision(None, dev)
    if amp == "off":
        return Precision(None, dev)
    if amp == "fp16" and dev == "cpu":
        raise ValueError("fp16 autocast is for GPUs; on CPU use --amp bf16 or off")
    if amp == "bf16" and dev == "cpu" and not cpu_features().native_bf16:
        warnings.warn(f"this CPU ({cpu_features().summary}) has no native bf16: bf16 is emulated and much slower "
                      "than fp32 (15x for 1.0-MobileNetV2-224 training on an AVX2 CPU); --amp auto picks fp32 here",
                      stacklevel=2)
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16, dev)
