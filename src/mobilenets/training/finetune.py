"""Fine-tuning: start from any weights file we read (``--init``), optionally with a frozen backbone.

A detector or segmenter starts from a classifier's weights like the papers' start from ImageNet:
the classifier's tensors go where the model's ``backbone_key`` says (``backbone.*``; a Faster
R-CNN's later blocks are its box head); the classifier layer has no counterpart.

A folded file (TFLite) holds no BatchNorm statistics; :func:`recalibrate_batchnorm` gives those
layers their input's statistics on the training data before the first step (see
:func:`mobilenets.models.fold.unfold_batchnorm`), so that train-mode BN starts as the file's function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from ..models import MobileNet
from ..models.fold import unfold_batchnorm
from ..models.layers import ConvBNAct
from ..models.spec import build_arch
from ..tasks import TaskConfig, config_of, kind_of
from ..tasks.backbone import HasBackbone
from ..weights import LoadedState, load_init_state


@dataclass
class InitReport:
    """What ``--init`` did: tensors loaded, modules re-initialised, BN layers that came folded."""

    loaded: int
    reinitialised: list[str]
    folded_bn: list[str] = field(default_factory=list)

    def describe(self, path: str) -> str:
        modules = dict.fromkeys(k.rsplit(".", 1)[0].removesuffix(".bn").removesuffix(".conv")
                                for k in self.reinitialised)
        folded = (f"; {len(self.folded_bn)} BatchNorm layers came folded (no statistics)" if self.folded_bn else "")
        return f"initialised {self.loaded} tensors from {path}; re-initialised: {', '.join(modules) or 'none'}{folded}"


def init_conventions(loaded: LoadedState, config: TaskConfig) -> TaskConfig:
    """``config`` with the input and layer conventions the init weights were trained with: their
    mean/std (TF files: [-1, 1]), padding (TF "SAME") and BN epsilon. A network fine-tuned from
    Google's weights sees its inputs as it did on ImageNet."""
    source = loaded.config
    src = source.backbone if hasattr(source, "backbone") else source
    same = dict(mean=src.mean, std=src.std, padding=src.padding, bn_eps=src.bn_eps)
    if hasattr(config, "backbone"):
        return config.replace(backbone=config.backbone.replace(**same))
    return config.replace(**same)


def init_from_weights(model: nn.Module, loaded: LoadedState | str) -> InitReport:
    """Load every tensor of the init weights whose name and shape match."""
    if not isinstance(loaded, LoadedState):
        loaded = load_init_state(loaded, kind_of(model).backbone(config_of(model)))
    state, path = loaded.state, loaded.meta.get("source", {}).get("files", ["the init weights"])[0]
    own = model.state_dict()
    if isinstance(model, HasBackbone) and not any(k in own for k in state):
        state = {model.backbone_key(k): v for k, v in state.items()}  # a classifier's weights
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in usable and not k.endswith("num_batches_tracked"))
    if not any(k.endswith(".weight") for k in usable):
        raise ValueError(f"{path}: no tensor matches {config_of(model).name} (is it the same architecture?)")
    model.load_state_dict(usable, strict=False)
    folded = [name for name, m in model.named_modules()
              if isinstance(m, nn.BatchNorm2d) and f"{name}.running_var" in usable and _identity_statistics(m)]
    return InitReport(len(usable), skipped, folded)


def _identity_statistics(bn: nn.BatchNorm2d) -> bool:
    """A folded file's BN as our loader writes it: mean 0, variance 1 - eps (an identity), scale 1 (a BN
    never trained has variance 1)."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        return False
    return bool(torch.all(mean == 0) and torch.all(bn.weight == 1) and torch.all(var == var[0])
                and abs(float(var[0]) - (1 - bn.eps)) < 1e-7)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, names: Iterable[str], batches: Iterable[torch.Tensor],
                          forward: Any = None) -> int:
    """Set the named BN layers' statistics to their inputs' mean and variance over ``batches``, keeping
    the eval-mode function (:func:`unfold_batchnorm`). The model runs in eval mode, so each layer
    sees what the file's network computes. Returns the number of images used."""
    modules = dict(model.named_modules())
    sums: dict[str, list[torch.Tensor | int]] = {}

    def hook(name: str) -> Any:
        def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            # per batch in float32 (no float64 copy of every map), combined across batches in float64;
            # BN's own statistics kernel: 6x faster than var_mean on a channels-last map
            x = inputs[0]
            mean, var = torch.batch_norm_update_stats(x.float(), None, None, 0.0)
            n = x.numel() // x.shape[1]
            s = sums.setdefault(name, [0, 0, 0])
            s[0] = s[0] + mean.double() * n
            s[1] = s[1] + (var.double() + mean.double() ** 2) * n
            s[2] = int(s[2]) + n
        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    folding = [m for m in modules.values() if isinstance(m, ConvBNAct) and m.fold_frozen_bn]
    for m in folding:  # a folded conv + BN would hide the BN's input from its hook
        m.fold_frozen_bn = False
    was_training = model.training
    model.eval()
    images = 0
    try:
        for x in batches:
            (forward or model)(x)
            images += len(x)
    finally:
        for h in handles:
            h.remove()
        for m in folding:
            m.fold_frozen_bn = True
        model.train(was_training)
    for n, (s1, s2, count) in sums.items():
        mean = torch.as_tensor(s1) / count
        unfold_batchnorm(cast(nn.BatchNorm2d, modules[n]), mean, torch.as_tensor(s2) / count - mean * mean)
    return images


def _frozen_modules(model: nn.Module) -> tuple[nn.Module, ...]:
    """A task model's backbone; a classifier's layers but the classifier."""
    if isinstance(model, HasBackbone):
        return model.backbone_modules()
    net = cast(MobileNet, model)
    return net.stem, net.blocks, net.head


def new_layers(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an init file does not provide: a detector's or segmenter's layers outside its
    backbone (extras, top-down sums, predictors, ASPP), a classifier's classifier."""
    held = {id(p) for m in _frozen_modules(model) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in held]


def early_stages(model: nn.Module, stages: int) -> tuple[nn.Module, ...]:
    """The stem and blocks of the backbone's first ``stages`` resolution stages (strides 2, 4, 8, 16 and
    32: the spec's ``feature_info``), where the features are generic edges and textures."""
    if stages <= 0:
        return ()
    trunk = cast(MobileNet, model.backbone if isinstance(model, HasBackbone) else model)
    features = build_arch(kind_of(model).backbone(config_of(model))).features
    last = int(features[min(stages, len(features)) - 1].module.split(".")[1])
    return (trunk.stem, *list(trunk.blocks)[: last + 1])


def freeze(model: nn.Module, frozen_backbone: bool, stages: int = 0) -> None:
    """No gradients for the backbone (``frozen_backbone``) or for its first ``stages`` stages, whose
    conv + BN pairs then run as one conv (``ConvBNAct.fold_frozen_bn``)."""
    modules = _frozen_modules(model) if frozen_backbone else early_stages(model, stages)
    frozen = {id(p) for m in modules for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad = id(p) not in frozen
    frozen_units = {id(u) for m in modules for u in m.modules()}
    for unit in model.modules():
        if isinstance(unit, ConvBNAct):
            unit.fold_frozen_bn = id(unit) in frozen_units


def set_train_mode(model: nn.Module, frozen_backbone: bool, frozen_bn: bool = False, frozen_stages: int = 0) -> None:
    """Training mode, but frozen layers (the backbone, or its first ``frozen_stages`` stages) keep their
    BN statistics, and with ``frozen_bn`` the whole backbone's BN layers run in inference mode (their
    affine parameters still learn); a detector's or segmenter's new layers normalize by their batches."""
    model.train()
    inner = getattr(model, "module", model)
    for m in _frozen_modules(inner) if frozen_backbone else early_stages(inner, frozen_stages):
        m.eval()
    if frozen_bn:
        for bn in (b for m in _frozen_modules(inner) for b in m.modules()):
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.eval()
