"""BatchNorm folding: the inference form every runtime and the memory-efficient executor use."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvBNAct
from .mobilenet import MobileNet


def fold_batchnorm(model: MobileNet) -> MobileNet:
    """A copy for inference with every BatchNorm folded into its conv (``conv.bias`` carries it)."""
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            dtype = m.conv.weight.dtype  # fold in float64: the folded weights round once, not twice
            m.conv = fuse_conv_bn_eval(m.conv.double(), m.bn.double()).to(dtype)
            m.bn = nn.Identity()
    return folded
