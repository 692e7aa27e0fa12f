"""BatchNorm folding: the inference form every runtime and the memory-efficient executor use."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvBNAct

M = TypeVar("M", bound=nn.Module)


def fold_batchnorm(model: M) -> M:
    """A copy for inference with every BatchNorm folded into its conv (``conv.bias`` carries it)."""
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            dtype = m.conv.weight.dtype  # fold in float64: the folded weights round once, not twice
            m.conv = fuse_conv_bn_eval(m.conv.double(), m.bn.double()).to(dtype)
            m.bn = nn.Identity()
    return folded


def unfold_batchnorm(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Give ``bn`` the statistics (``mean``, ``var``) of its input while keeping its inference function.

    A folded file (TFLite) keeps no statistics: its BN is ``x + bias``. In training mode BatchNorm
    normalizes by the batch's statistics instead, which erases the per-channel scale and offset that
    the folded conv encodes, and the network falls to chance. With its input's real statistics and
    the scale and shift that undo them, train-mode BN starts as the function the file encodes, and
    eval mode computes exactly the same as before.
    """
    assert bn.running_mean is not None and bn.running_var is not None, "a BN that tracks statistics"
    with torch.no_grad():
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()  # eval BN is scale * x + shift
        shift = bn.bias.double() - bn.running_mean.double() * scale
        mean, var = mean.double(), var.double().clamp_min(0)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(scale * (var + bn.eps).sqrt())
        bn.bias.copy_(shift + scale * mean)
