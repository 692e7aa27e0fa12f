"""State-dict conversion between mobilenets and the PyTorch model zoos (torchvision, timm).

One name table per format, derived from the architecture spec: each of our convs (``stem``,
``blocks.<i>.<role>``, ``head``) maps to the foreign conv and BatchNorm prefixes, and our
``classifier`` to theirs. Tensors are copied unchanged (both sides are PyTorch layouts).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..models import ModelConfig, parse_name
from ..models.spec import Arch, Block, build_arch

ZOO_FORMATS = ("torchvision", "timm")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_OPTIONAL = "num_batches_tracked"  # not saved by every framework; copied when present


def _arch_of(model: nn.Module | ModelConfig | str) -> Arch:
    if isinstance(model, nn.Module):
        arch = getattr(model, "arch", None)
        if not isinstance(arch, Arch):
            raise TypeError("model must be a mobilenets MobileNet, a ModelConfig or a model name")
        return arch
    if isinstance(model, str):
        model = parse_name(model)
    return build_arch(model)


def _timm_stages(arch: Arch) -> list[tuple[int, int]]:
    """(stage, index) of each block in timm: V2 stages are the table rows, V1 stages start at strides."""
    out: list[tuple[int, int]] = []
    stage, idx, prev_row = -1, 0, None
    for b in arch.blocks:
        new = b.row != prev_row if arch.config.family == "v2" else (b.stride > 1 or stage < 0)
        if new:
            stage, idx = stage + 1, 0
        out.append((stage, idx))
        idx += 1
        prev_row = b.row
    return out


def _block_roles(b: Block) -> list[str]:
    return [layer.name.rsplit(".", 1)[1] for layer in b.layers]


def conv_map(arch: Arch, fmt: str) -> tuple[dict[str, tuple[str, str]], str]:
    """``{our conv prefix: (their conv prefix, their BN prefix)}`` and their classifier prefix."""
    if fmt not in ZOO_FORMATS:
        raise ValueError(f"unknown state-dict format {fmt!r}; valid: {', '.join(ZOO_FORMATS)}")
    if any(b.kind == "conv" for b in arch.blocks):
        raise ValueError(f"{fmt} has no equivalent of the '{arch.config.variant}' variant")
    m: dict[str, tuple[str, str]] = {}
    if fmt == "torchvision":
        if arch.config.family != "v2":
            raise ValueError("torchvision has no MobileNet V1; use source='timm' for V1 weights")
        m["stem"] = ("features.0.0", "features.0.1")
        for b in arch.blocks:
            p = f"features.{b.index + 1}.conv"
            roles = _block_roles(b)
            seq = 0
            for role in roles:
                if role == "project":
                    m[f"blocks.{b.index}.project"] = (f"{p}.{seq}", f"{p}.{seq + 1}")
                else:
                    m[f"blocks.{b.index}.{role}"] = (f"{p}.{seq}.0", f"{p}.{seq}.1")
                    seq += 1
        if arch.head is not None:
            n = len(arch.blocks) + 1
            m["head"] = (f"features.{n}.0", f"features.{n}.1")
        return m, "classifier.1"
    m["stem"] = ("conv_stem", "bn1")
    for b, (s, i) in zip(arch.blocks, _timm_stages(arch)):
        p = f"blocks.{s}.{i}"
        roles = _block_roles(b)
        if "expand" in roles:  # timm InvertedResidual
            names = {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
        else:  # timm DepthwiseSeparableConv (V1 blocks and V2's t=1 block)
            names = {"depthwise": ("conv_dw", "bn1"), "pointwise": ("conv_pw", "bn2"), "project": ("conv_pw", "bn2")}
        for role in roles:
            conv, bn = names[role]
            m[f"blocks.{b.index}.{role}"] = (f"{p}.{conv}", f"{p}.{bn}")
    if arch.head is not None:
        m["head"] = ("conv_head", "bn2")
    return m, "classifier"


def key_map(arch: Arch, fmt: str) -> dict[str, str]:
    """``{our state-dict key: their key}`` for every tensor."""
    convs, cls = conv_map(arch, fmt)
    keys: dict[str, str] = {}
    for ours, (conv, bn) in convs.items():
        keys[f"{ours}.conv.weight"] = f"{conv}.weight"
        for k in BN_KEYS:
            keys[f"{ours}.bn.{k}"] = f"{bn}.{k}"
    if arch.classifier is not None:
        keys["classifier.weight"] = f"{cls}.weight"
        keys["classifier.bias"] = f"{cls}.bias"
    return keys


def _remap(src: Mapping[str, torch.Tensor], mapping: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    missing = [k for k in mapping.values() if k not in src and not k.endswith(_OPTIONAL)]
    if missing:
        raise KeyError(f"{what}: {len(missing)} tensor(s) missing from the state dict, e.g. {missing[:5]}")
    return {dst: src[s] for dst, s in mapping.items() if s in src}


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    model: nn.Module | ModelConfig | str,
    target: str = "mobilenets",
) -> dict[str, torch.Tensor]:
    """Map a torchvision/timm state dict onto ours (or ours onto theirs with ``target=``).

    ``model`` gives the architecture (a MobileNet, a ModelConfig or a name). Examples::

        ours = convert_state_dict(torchvision_model.state_dict(), "torchvision", model)
        theirs = convert_state_dict(model.state_dict(), "mobilenets", model, target="timm")
    """
    arch = _arch_of(model)
    if source == target:
        raise ValueError("source and target are the same format")
    if source == "mobilenets":
        mapping = key_map(arch, target)
        inverse = {v: k for k, v in mapping.items()}
        return _remap(state_dict, inverse, f"converting to {target}")
    if target != "mobilenets":
        raise ValueError("one side of the conversion must be 'mobilenets'")
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return _remap(sd, key_map(arch, source), f"converting from {source}")
