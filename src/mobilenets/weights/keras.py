"""Keras ``applications.MobileNet`` / ``MobileNetV2`` weights (.h5, .weights.h5) <-> our models.

Read with h5py: the legacy HDF5 layout (Keras 2 downloads and ``model.save("x.h5")``: one group
per layer with a ``weight_names`` attribute) and the Keras 3 ``.weights.h5`` layout (groups
``layers/<path>/vars`` carrying the layer name). Keras' layer names are the contract: one name
table per family, derived from our spec.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import ModelConfig
from ..models.registry import published_widths
from ..models.spec import Arch, Family, build_arch
from ..models.tf_compat import tf_overrides
from .native import WeightsError

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def keras_names(arch: Arch) -> tuple[dict[str, tuple[str, str]], str | None]:
    """``{our conv prefix: (keras conv layer, keras BN layer)}`` and the classifier layer name."""
    names: dict[str, tuple[str, str]] = {}
    v1 = arch.config.family == "v1"
    if any(b.kind == "conv" for b in arch.blocks):
        raise WeightsError("Keras has no equivalent of the 'conv' variant")
    names["stem"] = ("conv1", "conv1_bn") if v1 else ("Conv1", "bn_Conv1")
    for b in arch.blocks:
        for layer in b.layers:
            role = layer.name.rsplit(".", 1)[1]
            if v1:
                k = {"depthwise": f"conv_dw_{b.index + 1}", "pointwise": f"conv_pw_{b.index + 1}"}[role]
                names[layer.name] = (k, f"{k}_bn")
            else:
                k = "expanded_conv" if b.index == 0 else f"block_{b.index}"
                names[layer.name] = (f"{k}_{role}", f"{k}_{role}_BN")
    if arch.head is not None:
        names["head"] = ("Conv_1", "Conv_1_bn")
    classifier = None if arch.classifier is None else ("conv_preds" if v1 else "predictions")
    return names, classifier


def read_keras_h5(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weight arrays in Keras order (kernel, bias / gamma, beta, mean, var)."""
    import h5py

    path = Path(path)
    if path.suffix == ".keras":
        return _read_keras_zip(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from None
    out: dict[str, list[np.ndarray]] = {}
    with f:
        if "layers" in f and isinstance(f["layers"], h5py.Group):  # Keras 3 .weights.h5
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and name.endswith("vars") and "name" in obj.attrs:
                    arrays = [np.asarray(obj[k]) for k in sorted(obj.keys(), key=int)]
                    if arrays:
                        out[str(obj.attrs["name"])] = arrays

            f["layers"].visititems(visit)
        else:  # legacy layout, optionally under model_weights/
            root = f.get("model_weights", f)
            for lname in root:
                g = root[lname]
                if not isinstance(g, h5py.Group) or "weight_names" not in g.attrs:
                    continue
                wn = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs["weight_names"]]
                if wn:
                    out[lname] = [np.asarray(g[n]) for n in wn]
    if not out:
        raise WeightsError(f"{path}: no Keras layer weights found")
    return out


def _read_keras_zip(path: Path) -> dict[str, list[np.ndarray]]:
    try:
        with zipfile.ZipFile(path) as z, tempfile.TemporaryDirectory() as d:
            z.extract("model.weights.h5", d)
            return read_keras_h5(Path(d) / "model.weights.h5")
    except (zipfile.BadZipFile, KeyError) as e:
        raise WeightsError(f"{path}: not a readable .keras archive ({e})") from None


def _conv_to_torch(k: np.ndarray, depthwise: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(k)).float()
    if depthwise:  # (kh, kw, C, 1) -> (C, 1, kh, kw)
        return t.permute(2, 3, 0, 1).reshape(t.shape[2] * t.shape[3], 1, t.shape[0], t.shape[1]).contiguous()
    return t.permute(3, 2, 0, 1).contiguous()  # (kh, kw, in, out) -> (out, in, kh, kw)


def keras_state_dict(layers: dict[str, list[np.ndarray]], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict from Keras layer weights (raises KeyError/WeightsError when they do not fit)."""
    arch = build_arch(cfg)
    names, cls = keras_names(arch)
    by_name = {layer.name: layer for layer in arch.layers()}
    sd: dict[str, torch.Tensor] = {}
    for ours, (conv, bn) in names.items():
        if conv not in layers or bn not in layers:
            raise WeightsError(f"Keras layer {conv!r} or {bn!r} missing")
        sd[f"{ours}.conv.weight"] = _conv_to_torch(layers[conv][0], by_name[ours].kind == "depthwise")
        gamma, beta, mean, var = (torch.from_numpy(np.asarray(a)).float() for a in layers[bn])
        sd.update({f"{ours}.bn.weight": gamma, f"{ours}.bn.bias": beta, f"{ours}.bn.running_mean": mean,
                   f"{ours}.bn.running_var": var})
    if cls is not None:
        if cls not in layers:
            raise WeightsError(f"Keras layer {cls!r} (the classifier) missing; is the file include_top=False?")
        k, b = layers[cls]
        w = torch.from_numpy(np.asarray(k)).float()
        sd["classifier.weight"] = w.reshape(-1, w.shape[-1]).t().contiguous()
        sd["classifier.bias"] = torch.from_numpy(np.asarray(b)).float()
    return sd


def keras_candidates(layers: dict[str, list[np.ndarray]], cfg_hint: ModelConfig | None) -> list[ModelConfig]:
    """Configs to try: the family is told by the layer names, the width by the stem's channels."""
    family: Family | None = "v1" if "conv_dw_1" in layers else "v2" if "Conv1" in layers else None
    if family is None:
        raise WeightsError("not a Keras MobileNet/MobileNetV2 file (no conv_dw_1 or Conv1 layer)")
    v1 = family == "v1"
    cls_layer = "conv_preds" if v1 else "predictions"
    num_classes = int(np.asarray(layers[cls_layer][-1]).shape[-1]) if cls_layer in layers else 0
    res = cfg_hint.resolution if cfg_hint is not None else 224
    over = {**tf_overrides(family, source="keras"), "num_classes": num_classes, "resolution": res}
    hint = [ModelConfig(family=family, alpha=cfg_hint.alpha).replace(**over)] if cfg_hint is not None else []
    return hint + published_widths(family, **over)


def export_keras(model: Any, path: str | Path) -> Path:
    """Save our model as a Keras ``.weights.h5`` loadable by ``keras.applications.MobileNet[V2]``.

    Builds the Keras model (needs ``keras``; the torch backend is used unless another is set)
    and lets Keras write its own file, so the layout is whatever Keras expects.
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as e:
        raise WeightsError("exporting to Keras needs the keras package (pip install keras)") from e
    cfg: ModelConfig = model.config
    if cfg.activation != "relu6" or cfg.variant != "standard" or cfg.expansion is not None:
        raise WeightsError("Keras applications only build the standard ReLU6 MobileNets")
    top = cfg.num_classes > 0
    builder = keras.applications.MobileNet if cfg.family == "v1" else keras.applications.MobileNetV2
    km = builder(input_shape=(cfg.resolution, cfg.resolution, cfg.in_chans), alpha=cfg.alpha, include_top=top,
                 weights=None, classes=cfg.num_classes if top else 1000, classifier_activation=None)
    names, cls = keras_names(model.arch)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    by_name = {layer.name: layer for layer in model.arch.layers()}
    for ours, (conv, bn) in names.items():
        w = sd[f"{ours}.conv.weight"]
        if by_name[ours].kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            k = w.permute(2, 3, 0, 1).numpy()
        else:
            k = w.permute(2, 3, 1, 0).numpy()
        km.get_layer(conv).set_weights([k])
        km.get_layer(bn).set_weights([sd[f"{ours}.bn.{n}"].numpy() for n in ("weight", "bias", "running_mean",
                                                                                "running_var")])
    if cls is not None:
        w, b = sd["classifier.weight"], sd["classifier.bias"]
        kernel = w.t().numpy()
        if cfg.family == "v1":
            kernel = kernel.reshape(1, 1, *kernel.shape)
        km.get_layer(cls).set_weights([kernel, b.numpy()])
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise WeightsError(f"Keras weights files must end in .weights.h5, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    km.save_weights(str(path))
    return path
